"""The purchase endpoints (seed 001): /batch_predict on a whole request, /predict on an adaptive batch."""

from __future__ import annotations

import logging
from collections import defaultdict

import pandas as pd
from starlette.responses import Response

from serving import arrow
from serving.http import Call, PendingRecord, json_response, rejection
from serving.predictor import Predictor
from serving.registry import ModelEntry
from serving.validation import RecordsValidator, RequestRejected

logger = logging.getLogger(__name__)
NOT_LOADED = "Model is not loaded."
FAILED = "Prediction failed; the error is in the server log."


def _model_or_503(predictor: Predictor, routing_key: str | None) -> ModelEntry:
    try:
        return predictor.purchase_model(routing_key)
    except LookupError:
        raise RequestRejected(503, NOT_LOADED, reason="model_not_loaded") from None


def batch_predict(predictor: Predictor, validator: RecordsValidator, call: Call) -> Response:
    endpoint = "/batch_predict"
    if call.rejected is not None:
        return call.rejected
    try:
        entry = _model_or_503(predictor, call.routing_key)
        if arrow.is_arrow(call.media_type):
            frame = arrow.batch_request(call.body, entry, validator.max_records)
        else:
            frame = validator.batch_body(call.body)
    except RequestRejected as exc:
        return rejection(exc, endpoint, call.request_id)
    scored = predictor.score(entry, frame, endpoint=endpoint, request_id=call.request_id, routing_key=call.routing_key)
    if arrow.wants_arrow(call.accept):
        return arrow.batch_response(scored, call.request_id)
    predictions = [
        {"predicted_purchase_probability": p, "predicted_purchase": c}
        for p, c in zip(scored.proba.tolist(), scored.classes.tolist())
    ]
    payload = {"predictions": predictions, "model_name": entry.name, "model_version": entry.version}
    return json_response(200, payload, call.request_id)


def predict_pending(predictor: Predictor, items: list) -> list:
    """Answer every item of an adaptive batch: errors decided before the batcher pass through; the rest are
    grouped by A/B variant and scored with one model call per variant."""
    answers: list = list(items)
    groups: dict[str, list[int]] = defaultdict(list)
    entries: dict[str, ModelEntry] = {}
    for position, item in enumerate(items):
        if not isinstance(item, PendingRecord):
            continue
        try:
            entry = _model_or_503(predictor, item.routing_key)
        except RequestRejected as exc:
            answers[position] = rejection(exc, "/predict", item.request_id)
            continue
        entries[entry.requested] = entry
        groups[entry.requested].append(position)
    for requested, positions in groups.items():
        entry = entries[requested]
        pending: list[PendingRecord] = [items[p] for p in positions]
        frame = pd.DataFrame.from_records([p.record for p in pending], columns=entry.validator.columns)
        try:
            scored = predictor.score(
                entry,
                frame,
                endpoint="/predict",
                request_id=[p.request_id for p in pending],
                routing_key=[p.routing_key for p in pending],
            )
        except Exception:  # noqa: BLE001 - answer this variant's callers with a 500, keep the other variants
            logger.exception("prediction with %s failed", requested)
            for position, item in zip(positions, pending):
                answers[position] = json_response(500, {"detail": FAILED}, item.request_id)
            continue
        for position, item, p, c in zip(positions, pending, scored.proba.tolist(), scored.classes.tolist()):
            payload = {
                "predicted_purchase_probability": p,
                "predicted_purchase": c,
                "model_name": entry.name,
                "model_version": entry.version,
            }
            answers[position] = (payload, item.request_id)
    return answers
