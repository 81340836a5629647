"""POST /v1/feedback: the true outcomes of past predictions, by prediction_id, for the quality job.

    {"outcomes": [{"prediction_id": "0193...", "outcome": 1, "observed_at": "2026-11-24T09:00:00Z"}, ...]}
    200 {"accepted": 2, "duplicates": 1, "corrections": 1, "corrected": [...]}

1 to MAX_RECORDS items. The same (prediction_id, outcome) twice is counted once (a duplicate, not stored again);
a different outcome for an id that has one is stored as its latest and counted as a correction (the `corrected`
ids are listed). Outcomes are accepted for any well-formed id: the service cannot know every id other replicas
handed out, so ids that match no logged prediction are reported by the quality job as unmatched.
Each request's new outcomes reach the store (monitoring/outcomes.py) before the 200 is sent.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Request
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StringConstraints, ValidationError
from starlette.responses import Response

from monitoring.outcomes import Outcome, OutcomeStore
from serving.codecs.errors import CodecError
from serving.codecs.media import JSON
from serving.codecs.records import error_reason, fastapi_errors
from serving.core import ids
from serving.errors import ServingError
from serving.web.errors import DETAIL, documented, json_response
from serving.web.gate import DoorRoute, request_id
from serving.web.policy import Lane, Policy, Scope, declare, run_in
from settings import get_settings

logger = logging.getLogger(__name__)
_settings = get_settings()
# Parsing 10,000 outcomes and the store's locked write run on the bulk lane, off the event loop.
FAILED = "Recording the outcomes failed; the error is in the server log. Retrying is safe: an outcome already stored counts as a duplicate."
FEEDBACK_POLICY = Policy("/v1/feedback", Scope.FEEDBACK, Lane.BULK, DETAIL.failing(FAILED), (JSON,))


class StoreUnavailable(ServingError):
    status = 503
    reason = "store_unavailable"


FEEDBACK = Counter(
    "serving_feedback", "Outcomes received on POST /v1/feedback, by what became of them",
    ["result"],  # accepted (stored; corrections included), duplicate, correction, rejected
)


# Both checks run in pydantic-core (no Python call per item): 10,000 items validate in a few milliseconds.
# The project's integer rule (training/schema.py): 1 and 1.0 are accepted; true, "1" and 0.5 are not.
ZeroOrOne = Annotated[StrictFloat, Field(ge=0, le=1, multiple_of=1, description="What happened: 0 or 1.")]
PredictionId = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=ids.ANY_CASE),
                         Field(description="The prediction_id a prediction endpoint answered (a UUID).")]


class OutcomeItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prediction_id: PredictionId
    outcome: ZeroOrOne
    observed_at: datetime | None = Field(None, strict=True, description="When the outcome happened (ISO 8601); optional.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcomes: list[OutcomeItem] = Field(min_length=1, max_length=_settings.max_records)


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="Outcomes stored: new ones and corrections.")
    duplicates: int = Field(description="Outcomes already stored with the same value (counted once, not stored).")
    corrections: int = Field(description="Accepted outcomes that replaced a different earlier outcome.")
    corrected: list[str] = Field(description="The prediction_ids whose outcome was corrected (at most 200).")


@lru_cache(maxsize=1)
def outcome_store() -> OutcomeStore:
    return OutcomeStore.from_settings(_settings)


def _request_schema() -> dict:
    """The body's JSON Schema with the item schema inlined: the route reads its body itself (the gate holds it to
    its media type and size first), so FastAPI does not list these models among the document's components."""
    schema = FeedbackRequest.model_json_schema()
    definitions = schema.pop("$defs", {})
    schema["properties"]["outcomes"]["items"] = definitions["OutcomeItem"]
    return schema


router = APIRouter(tags=["Service APIs"], route_class=DoorRoute)


def _parse(raw: bytes) -> list[Outcome]:
    try:
        body = FeedbackRequest.model_validate_json(raw)
    except ValidationError as exc:
        FEEDBACK.labels("rejected").inc()
        raise CodecError(fastapi_errors(exc), error_reason(exc)) from None
    return [Outcome(item.prediction_id, int(item.outcome), item.observed_at) for item in body.outcomes]


def _store(raw: bytes) -> dict:
    outcomes = _parse(raw)
    try:
        result = outcome_store().ingest(outcomes)
    except OSError:
        logger.exception("cannot store feedback")
        raise StoreUnavailable("The outcome store cannot be written; nothing was stored. Retry.") from None
    FEEDBACK.labels("accepted").inc(result.accepted)
    FEEDBACK.labels("duplicate").inc(result.duplicates)
    FEEDBACK.labels("correction").inc(result.corrections)
    corrected = [outcomes[p].prediction_id for p in result.corrected[:200]]
    return {"accepted": result.accepted, "duplicates": result.duplicates, "corrections": result.corrections,
            "corrected": corrected}


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": _request_schema()}}}},
    responses=documented(FEEDBACK_POLICY.errors, {
        401: "No valid bearer token (FEEDBACK_TOKENS, else API_TOKENS; required once any token is set).",
        403: "The token does not grant the feedback scope.", 413: "Body over MAX_BODY_BYTES.",
        415: "Not application/json.", 422: "A malformed item: loc = ['body', 'outcomes', i, field].",
        503: "The outcome store cannot be written; nothing was stored."}),
)
@declare(FEEDBACK_POLICY)
async def feedback(request: Request) -> Response:
    """Record the true outcomes of past predictions (by prediction_id) for the quality job."""
    payload = await run_in(FEEDBACK_POLICY.lane, _store, await request.body())
    return json_response(200, payload, request_id(request))
