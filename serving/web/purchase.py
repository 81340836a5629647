"""The purchase endpoints (seed 001): admission (before the batcher) and scoring, with typed hand-offs.

/predict:       Call --admit_one--> PendingRecord --(adaptive batcher)--> predict_pending --> list[Outcome]
/batch_predict: Call --admit_batch--> BatchInput --> batch_predict --> Response

Request bodies are decoded by media type (`BATCH_DECODERS`) and answers encoded by the Accept header
(`BATCH_ENCODERS`): JSON here; other encodings (Arrow) plug in by adding an entry to each.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from starlette.responses import Response

from serving.codecs import arrow
from serving.codecs.media import ARROW_STREAM, JSON
from serving.codecs.records import RecordsValidator, validator_for
from serving.core.predictor import Predictor
from serving.core.registry import ModelEntry
from serving.errors import ServingError
from serving.web.errors import DETAIL, json_response
from serving.web.gate import Call
from serving.web.policy import Lane, Policy, Scope

logger = logging.getLogger(__name__)
NOT_LOADED = "Model is not loaded."  # seed 001, verbatim; the registry's reason follows it


class NotLoaded(ServingError):
    """The model behind the purchase routes is not served or not loaded: the server's fault (the client named no
    model), so 503, with the seed's message and then which model and why."""

    status = 503
    reason = "model_not_loaded"


class PredictionFailed(RuntimeError):
    """The model call for this record's batch raised; the caller gets the route's documented 500."""


def purchase_model(predictor: Predictor, routing_key: str | None) -> ModelEntry:
    try:
        return predictor.purchase_model(routing_key)
    except LookupError as exc:
        why = getattr(exc, "why", None) or (exc.args[0] if exc.args else "")
        raise NotLoaded(f"{NOT_LOADED} {why}" if why else NOT_LOADED) from None


def _validator(predictor: Predictor, entry: ModelEntry) -> RecordsValidator:
    assert entry.model is not None, "registry.get only returns loaded models"
    return validator_for(entry.model, predictor.settings.max_records)


# --- /predict ----------------------------------------------------------------------------------------------------

@dataclass
class PendingRecord:
    """One admitted /predict call: its validated values and the model that will answer it."""

    values: dict[str, Any]
    request_id: str
    routing_key: str | None
    entry: ModelEntry


@dataclass
class Outcome:
    """One /predict caller's answer: a prediction, or the failure of its batch's model call."""

    request_id: str
    payload: dict[str, Any] | None = None
    error: BaseException | None = None

    def response(self) -> Response:
        if self.payload is None:
            raise PredictionFailed("the model call of this request's batch failed") from self.error
        return json_response(200, self.payload, self.request_id)


def admit_one(predictor: Predictor, call: Call) -> PendingRecord:
    """Validate the record and pick its model before it may queue for the batcher (raises a ServingError)."""
    entry = purchase_model(predictor, call.routing_key)
    return PendingRecord(_validator(predictor, entry).single_record(call.body), call.request_id, call.routing_key, entry)


def predict_pending(predictor: Predictor, items: list[PendingRecord]) -> list[Outcome]:
    """Answer every item of an adaptive batch, with one model call per A/B variant; a variant whose model call
    raises fails its own callers only. Never raises: BentoML would answer every caller of the batch."""
    outcomes = [Outcome(item.request_id) for item in items]
    groups: dict[int, list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        # By entry, not by name: around a hot swap one batch may hold records admitted on either version.
        groups[id(item.entry)].append(position)
    for positions in groups.values():
        pending = [items[p] for p in positions]
        entry = pending[0].entry
        try:
            frame = _validator(predictor, entry).frame([p.values for p in pending])
            scored = predictor.score(
                entry,
                frame,
                endpoint=PREDICT.name,
                request_id=[p.request_id for p in pending],
                routing_key=[p.routing_key for p in pending],
            )
        except Exception as exc:  # noqa: BLE001 - answered per caller with the documented 500
            logger.exception("prediction with %s failed", entry.requested)
            for position in positions:
                outcomes[position].error = exc
            continue
        for position, p, c, prediction_id in zip(positions, scored.proba.tolist(), scored.classes.tolist(), scored.ids):
            outcomes[position].payload = {
                "predicted_purchase_probability": p,
                "predicted_purchase": c,
                "prediction_id": prediction_id,
                "model_name": entry.name,
                "model_version": entry.version,
            }
    return outcomes


# --- /batch_predict ----------------------------------------------------------------------------------------------

@dataclass
class BatchInput:
    """An admitted /batch_predict request: the validated frame and the model that will answer it."""

    frame: pd.DataFrame
    entry: ModelEntry
    call: Call


@dataclass
class BatchResult:
    entry: ModelEntry
    proba: np.ndarray
    classes: np.ndarray
    ids: list[str]
    request_id: str


def _json_records(body: bytes, validator: RecordsValidator) -> pd.DataFrame:
    return validator.batch_body(body)


def _json_answer(result: BatchResult) -> Response:
    predictions = [
        {"predicted_purchase_probability": p, "predicted_purchase": c, "prediction_id": i}
        for p, c, i in zip(result.proba.tolist(), result.classes.tolist(), result.ids)
    ]
    payload = {"predictions": predictions, "model_name": result.entry.name, "model_version": result.entry.version}
    return json_response(200, payload, result.request_id)


def _arrow_answer(result: BatchResult) -> Response:
    stream = arrow.predictions_stream(arrow.BATCH_COLUMNS, result.proba, result.classes, result.entry.name,
                                      result.entry.version, result.ids)
    return Response(stream, media_type=ARROW_STREAM, headers={"x-request-id": result.request_id})


# Content-Type -> (body, validator) -> validated frame; raises a CodecError naming the record and field.
BATCH_DECODERS: dict[str, Callable[[bytes, RecordsValidator], pd.DataFrame]] = {
    JSON: _json_records,
    ARROW_STREAM: arrow.batch_request,
}
# Accept -> answer; anything not listed (*/*, application/*) gets JSON.
BATCH_ENCODERS: dict[str, Callable[[BatchResult], Response]] = {JSON: _json_answer, ARROW_STREAM: _arrow_answer}


def admit_batch(predictor: Predictor, call: Call) -> BatchInput:
    entry = purchase_model(predictor, call.routing_key)
    return BatchInput(BATCH_DECODERS[call.media_type](call.body, _validator(predictor, entry)), entry, call)


def batch_predict(predictor: Predictor, batch: BatchInput) -> Response:
    call = batch.call
    scored = predictor.score(
        batch.entry, batch.frame, endpoint=BATCH_PREDICT.name, request_id=call.request_id, routing_key=call.routing_key
    )
    result = BatchResult(batch.entry, scored.proba, scored.classes, scored.ids, call.request_id)
    return BATCH_ENCODERS.get(call.accept, _json_answer)(result)


# Admitted on the event loop (one record, ~20 us), scored in BentoML's adaptive batches.
PREDICT = Policy("/predict", Scope.PREDICT, Lane.BATCH, DETAIL, (JSON,), admit=admit_one)
# Parsed, validated and scored on the bulk lane.
BATCH_PREDICT = Policy("/batch_predict", Scope.PREDICT, Lane.BULK, DETAIL, tuple(BATCH_DECODERS), admit=admit_batch)
