"""The explanation doors: thin routes over serving/core/explanations.py, in the mounted FastAPI app.

    POST /v1/explain                                     {"model_name", "model_version"?, "records", "output"?}
    GET  /v1/predictions/{prediction_id}/explanation     ?output=probability|log_odds
    both: ?format=html for a page with one contribution bar chart per record

Policy: the prediction routes' token scope (API_TOKENS, serving/web/auth.py); JSON bodies up to MAX_BODY_BYTES (413,
415 otherwise) and MAX_EXPLAIN_RECORDS records (422); errors in the `{"detail": ...}` shape (serving/web/errors.py);
and a lane of their own: every explanation runs on one dedicated thread, niced to EXPLAIN_NICE, so explanation
traffic never takes /predict's thread or the bulk lane, and gets only the CPU they leave.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Literal

import bentoml
from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, Response

from pydantic import ValidationError

from serving.codecs.explain_html import prediction_page, records_page
from serving.codecs.records import error_reason, fastapi_errors
from serving.core.explanations import ExplainError
from serving.web.errors import ClientError, error_response, json_response, request_id_of, unexpected_response
from serving.web.explain_schemas import OUTPUT_DOC, ExplainRequest, ExplainResponse, PredictionExplanation
from serving.web.gate import JSON, read_body
from settings import get_settings

logger = logging.getLogger(__name__)
ENDPOINT = "/v1/explain"
BY_ID = "/v1/predictions/{prediction_id}/explanation"
PATHS = (ENDPOINT, BY_ID)  # the token scope (service.py hands them to PredictionTokens)
_settings = get_settings()
Format = Literal["json", "html"]
FORMAT_DOC = "`html`: a page with a contribution bar chart per record instead of JSON."


def _lower_priority(nice: int) -> None:
    if nice:
        try:  # Linux: a thread id is a process id to setpriority, so only this thread is niced
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError as exc:  # a platform without per-thread priorities keeps the default
            logger.warning("explanation lane keeps the default priority: %s", exc)


_LANE: ThreadPoolExecutor | None = None


def explain_lane() -> ThreadPoolExecutor:
    """The one thread every explanation runs on (its own, never /predict's thread or the bulk lane's)."""
    global _LANE
    if _LANE is None:
        _LANE = ThreadPoolExecutor(1, thread_name_prefix="explain", initializer=_lower_priority,
                                   initargs=(_settings.explain_nice,))
    return _LANE


async def in_lane(function, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(explain_lane(), partial(function, *args))


def _explanations():
    return bentoml.get_current_service().explanations


def _records(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """POST /v1/explain's body, parsed, then explained by the core (in the lane: both cost CPU)."""
    try:
        request = ExplainRequest.model_validate_json(body)
    except ValidationError as exc:
        raise ClientError(422, fastapi_errors(exc), error_reason(exc)) from None
    return _core(_explanations().explain_records, request.model_name, request.model_version, request.records,
                 request.output)


def _core(function, *args: Any) -> Any:
    try:
        return function(*args)
    except ExplainError as exc:
        raise ClientError(exc.status, exc.detail, exc.reason) from None


router = APIRouter(tags=["Explanations"])
_ERRORS = {
    404: {"description": "Unknown model or version (POST), or no prediction with this id in the log (GET)."},
    410: {"description": "The version that made the prediction is no longer in the model store."},
    413: {"description": "Body over MAX_BODY_BYTES."}, 415: {"description": "Not application/json."},
    422: {"description": "Invalid records (naming the record and field), over MAX_EXPLAIN_RECORDS, or a malformed id."},
    503: {"description": "The model failed to load."},
}
_HTML = {200: {"description": "JSON, or with `?format=html` a page of contribution bar charts.",
               "content": {"text/html": {"schema": {"type": "string"}}}}}


@router.post(
    ENDPOINT, response_model=ExplainResponse, responses={**_HTML, **_ERRORS},
    openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": ExplainRequest.model_json_schema()}}}},
)
async def explain(request: Request, format: Format = Query("json", description=FORMAT_DOC)) -> Response:
    """Why the model answers what it does: each input's contribution to each record's output."""
    request_id = request_id_of(request.headers)
    try:
        body = await read_body(request.receive, request.headers, (JSON,), _settings.max_body_bytes)
        result, records = await in_lane(_records, body)
    except ClientError as exc:
        return error_response(exc, ENDPOINT, request_id)
    except Exception:  # noqa: BLE001 - the documented 500, never a traceback
        return unexpected_response(ENDPOINT, request_id)
    if format == "html":
        return HTMLResponse(records_page(result, records), headers={"x-request-id": request_id})
    return json_response(200, result, request_id)


@router.get(BY_ID, response_model=PredictionExplanation, responses={**_HTML, **_ERRORS})
async def explain_prediction(
    request: Request, prediction_id: str,
    output: Literal["probability", "log_odds"] = Query("probability", description=OUTPUT_DOC),
    format: Format = Query("json", description=FORMAT_DOC),
) -> Response:
    """A past prediction explained from its logged inputs, by the exact model version that made it."""
    request_id = request_id_of(request.headers)
    try:
        result = await in_lane(_core, _explanations().explain_logged, prediction_id, output)
    except ClientError as exc:
        return error_response(exc, BY_ID, request_id)
    except Exception:  # noqa: BLE001
        return unexpected_response(BY_ID, request_id)
    if format == "html":
        return HTMLResponse(prediction_page(result), headers={"x-request-id": request_id})
    return json_response(200, result, request_id)
