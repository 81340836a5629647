"""The explanation doors: thin routes over serving/core/explanations.py, in the mounted FastAPI app.

    POST /v1/explain                                     {"model_name", "model_version"?, "records", "output"?}
    GET  /v1/predictions/{prediction_id}/explanation     ?output=probability|log_odds
    both: ?format=html for a page with one contribution bar chart per record

Their policy (serving/web/policy.py): the predict token scope (API_TOKENS); JSON bodies up to MAX_BODY_BYTES and
MAX_EXPLAIN_RECORDS records (the schema and the core); errors in the DETAIL shape with a documented 500 of their
own; and `Lane.EXPLAIN`, a niced thread of their own with a bounded queue, so explanation traffic never takes
/predict's thread or the bulk lane, gets only the CPU they leave, and is refused (503) rather than piled up.
"""

from __future__ import annotations

from typing import Any, Literal

import bentoml
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.responses import HTMLResponse, Response

from serving.codecs.errors import CodecError
from serving.codecs.explain_html import prediction_page, records_page
from serving.codecs.media import JSON
from serving.codecs.records import error_reason, fastapi_errors
from serving.core.explanations import Explanations
from serving.web.errors import DETAIL, documented, json_response
from serving.web.explain_schemas import OUTPUT_DOC, ExplainRequest, ExplainResponse, PredictionExplanation
from serving.web.gate import DoorRoute, request_id
from serving.web.policy import Lane, Policy, Scope, declare, run_in

ENDPOINT = "/v1/explain"
BY_ID = "/v1/predictions/{prediction_id}/explanation"
FAILED = "Explanation failed; the error is in the server log."
EXPLAIN = Policy(ENDPOINT, Scope.PREDICT, Lane.EXPLAIN, DETAIL.failing(FAILED), (JSON,))
EXPLAIN_BY_ID = Policy(BY_ID, Scope.PREDICT, Lane.EXPLAIN, DETAIL.failing(FAILED))
Format = Literal["json", "html"]
FORMAT_DOC = "`html`: a page with a contribution bar chart per record instead of JSON."


def _explanations() -> Explanations:
    return bentoml.get_current_service().explanations


def _records(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """POST /v1/explain's body, parsed, then explained by the core (in the lane: both cost CPU)."""
    try:
        request = ExplainRequest.model_validate_json(body)
    except ValidationError as exc:
        raise CodecError(fastapi_errors(exc), error_reason(exc)) from None
    return _explanations().explain_records(request.model_name, request.model_version, request.records, request.output)


router = APIRouter(tags=["Explanations"], route_class=DoorRoute)
_ERRORS = {
    401: "No valid bearer token (when API_TOKENS is set).", 403: "The token does not grant the predict scope.",
    404: "Unknown model or version (POST), or no prediction with this id in the log (GET).",
    410: "The version that made the prediction is no longer in the model store.",
    422: "Invalid records (naming the record and field), over MAX_EXPLAIN_RECORDS, or a malformed id.",
    503: "The model failed to load, or the explanation lane is full (EXPLAIN_QUEUE calls waiting, or this one waited "
         "EXPLAIN_QUEUE_SECONDS without starting): retry later.",
}
_HTML = {"description": "JSON, or with `?format=html` a page of contribution bar charts.",
         "content": {"text/html": {"schema": {"type": "string"}}}}


@router.post(
    ENDPOINT, response_model=ExplainResponse,
    responses={200: _HTML, **documented(EXPLAIN.errors, {
        **_ERRORS, 413: "Body over MAX_BODY_BYTES.", 415: "Not application/json."})},
    openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": ExplainRequest.model_json_schema()}}}},
)
@declare(EXPLAIN)
async def explain(request: Request, format: Format = Query("json", description=FORMAT_DOC)) -> Response:
    """Why the model answers what it does: each input's contribution to each record's output."""
    result, records = await run_in(EXPLAIN.lane, _records, await request.body())  # the body: read by the gate
    if format == "html":
        return HTMLResponse(records_page(result, records), headers={"x-request-id": request_id(request)})
    return json_response(200, result, request_id(request))


@router.get(BY_ID, response_model=PredictionExplanation,
            responses={200: _HTML, **documented(EXPLAIN_BY_ID.errors, _ERRORS)})
@declare(EXPLAIN_BY_ID)
async def explain_prediction(
    request: Request, prediction_id: str,
    output: Literal["probability", "log_odds"] = Query("probability", description=OUTPUT_DOC),
    format: Format = Query("json", description=FORMAT_DOC),
) -> Response:
    """A past prediction explained from its logged inputs, by the exact model version that made it."""
    result = await run_in(EXPLAIN_BY_ID.lane, _explanations().explain_logged, prediction_id, output)
    if format == "html":
        return HTMLResponse(prediction_page(result), headers={"x-request-id": request_id(request)})
    return json_response(200, result, request_id(request))
