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
from serving.web.errors import ClientError, json_response
from serving.web.gate import JSON, Call
from serving.core.predictor import Predictor
from serving.core.registry import ModelEntry, ModelUnavailable
from serving.codecs.records import RecordsValidator

logger = logging.getLogger(__name__)
NOT_LOADED = "Model is not loaded."  # seed 001, verbatim; the registry's reason follows it


class PredictionFailed(RuntimeError):
    """The model call for this record's batch raised; the caller gets the endpoint's documented 500."""


def purchase_model(predictor: Predictor, routing_key: str | None) -> ModelEntry:
    try:
        return predictor.purchase_model(routing_key)
    except ModelUnavailable as exc:  # the seed's message, then which model and why
        raise ClientError(503, f"{NOT_LOADED} {exc.reason}", "model_not_loaded") from None
    except LookupError as exc:
        reason = exc.args[0] if exc.args else ""
        raise ClientError(503, f"{NOT_LOADED} {reason}" if reason else NOT_LOADED, "model_not_loaded") from None


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
    """Validate the record and pick its model before it may queue for the batcher (raises ClientError)."""
    entry = purchase_model(predictor, call.routing_key)
    assert entry.validator is not None
    return PendingRecord(entry.validator.single_record(call.body), call.request_id, call.routing_key, entry)


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
            frame = entry.validator.frame([p.values for p in pending])  # type: ignore[union-attr]
            scored = predictor.score(
                entry,
                frame,
                endpoint="/predict",
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
    return Response(stream, media_type=arrow.ARROW_STREAM, headers={"x-request-id": result.request_id})


# Content-Type -> (body, validator) -> validated frame; raises ClientError naming the record and field.
BATCH_DECODERS: dict[str, Callable[[bytes, RecordsValidator], pd.DataFrame]] = {
    JSON: _json_records,
    arrow.ARROW_STREAM: arrow.batch_request,
}
# Accept -> answer; anything not listed (*/*, application/*) gets JSON.
BATCH_ENCODERS: dict[str, Callable[[BatchResult], Response]] = {JSON: _json_answer, arrow.ARROW_STREAM: _arrow_answer}


def admit_batch(predictor: Predictor, call: Call) -> BatchInput:
    entry = purchase_model(predictor, call.routing_key)
    assert entry.validator is not None
    return BatchInput(BATCH_DECODERS[call.media_type](call.body, entry.validator), entry, call)


def batch_predict(predictor: Predictor, batch: BatchInput) -> Response:
    call = batch.call
    scored = predictor.score(
        batch.entry, batch.frame, endpoint="/batch_predict", request_id=call.request_id, routing_key=call.routing_key
    )
    result = BatchResult(batch.entry, scored.proba, scored.classes, scored.ids, call.request_id)
    return BATCH_ENCODERS.get(call.accept, _json_answer)(result)
