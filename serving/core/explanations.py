"""Explanations for the service, never HTTP: records explained by a served model, a past prediction explained by
the exact version that answered it (loaded from the store when it is no longer served), and the explanations that
/v1/predict items ask for. The explainer itself is training/explain; the door is serving/web/explain.py.

Errors are `ServingError` kinds carrying their status (serving/errors.py), answered by the door's policy: the
registry's 404 (unknown model) and 503 (not loaded), the codecs' 422 (invalid records), and the kinds below: 422
an unexplainable request, 404 an unknown prediction id, 410 a version the store no longer holds.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from threading import Lock
from typing import Any

import bentoml
import pandas as pd
from pydantic import ValidationError

from monitoring.lookup import LoggedPrediction, find_prediction
from serving.codecs.errors import CodecError
from serving.codecs.records import error_reason, fastapi_errors, validator_for
from serving.core import ids
from serving.core.predictor import Predictor
from serving.errors import ServingError
from settings import Settings
from training.explain.explainer import Explainers, Explanation, OutputSpace
from training.store import StoredModel, load_model

logger = logging.getLogger(__name__)


class ExplainError(ServingError):
    """The request cannot be explained as asked (too many records, a malformed id, an unusable log line)."""

    status = 422
    reason = "unexplainable"


class PredictionNotFound(ExplainError):
    status = 404
    reason = "unknown_prediction"


class VersionGone(ExplainError):
    status = 410
    reason = "version_gone"


FULL_LIMIT_INPUTS = 7  # MAX_EXPLAIN_RECORDS is the limit of a model of up to 7 inputs (128 coalitions: the purchase models)


def record_limit(max_records: int, inputs: int) -> int:
    """Most records one call may explain with a model of `inputs` inputs: the work per record doubles with each input
    (2^k coalitions), so past 7 inputs the limit halves with each one (the 9 drive inputs: a quarter)."""
    return max(1, max_records >> max(0, inputs - FULL_LIMIT_INPUTS))


def over_limit(records: int, model: StoredModel, max_records: int) -> str | None:
    """Why `records` records are too many to explain with `model`, or None."""
    inputs = len(model.input_schema["columns"])
    limit = record_limit(max_records, inputs)
    if records <= limit:
        return None
    scaled = f" ({max_records} for up to {FULL_LIMIT_INPUTS} inputs, halved for each input more)" if limit < max_records else ""
    return (f"{records} records is over the limit of {limit} explained records for {model.name}'s {inputs} inputs"
            f"{scaled} (MAX_EXPLAIN_RECORDS)")


def answer(explanation: Explanation) -> dict[str, Any]:
    return {
        "model_name": explanation.model_name, "model_version": explanation.model_version,
        "output": explanation.output, "method": explanation.method, "background_rows": explanation.background_rows,
        "explanations": explanation.records(),
    }


class Explanations:
    """What the explanation doors call; everything runs in the caller's thread (the door puts it in its lane)."""

    def __init__(self, predictor: Predictor, settings: Settings):
        self.predictor = predictor
        self.settings = settings
        self.explainers = Explainers(background_rows=settings.explain_background_rows)
        self._stored: OrderedDict[str, StoredModel] = OrderedDict()  # versions no longer served, loaded for audits
        self._lock = Lock()

    def explain(self, model: StoredModel, frame: pd.DataFrame, output: OutputSpace = "probability") -> Explanation:
        self.predictor.threads.one_thread()
        return self.explainers.get(model).explain(frame, output)

    def explain_records(self, model_name: str, model_version: str | None, records: list[dict[str, Any]],
                        output: OutputSpace = "probability") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """POST /v1/explain: the records validated against the served model's schema, explained; the answer and the
        validated records (the HTML page labels its bars with them)."""
        entry = self.predictor.registry.get(model_name, model_version)  # ModelNotServed 404, ModelUnavailable 503
        assert entry.model is not None
        validator = validator_for(entry.model, self.settings.max_records)
        too_many = over_limit(len(records), entry.model, self.settings.max_explain_records)
        if too_many:
            raise ExplainError([{"loc": ["body", "records"], "msg": too_many, "type": "too_long"}], "too_long")
        try:
            frame = validator.records(records, "records")
        except ValueError as exc:
            try:  # field errors in FastAPI's shape, as /batch_predict answers them; a broken rule as its message
                validator.many.validate_python(records)
            except ValidationError as field_errors:
                raise CodecError(fastapi_errors(field_errors, ("body", "records")), error_reason(field_errors)) from None
            raise CodecError(str(exc), "rule") from None
        return answer(self.explain(entry.model, frame, output)), frame.to_dict("records")

    def explain_logged(self, prediction_id: str, output: OutputSpace = "probability") -> dict[str, Any]:
        """GET /v1/predictions/{id}/explanation: the logged inputs, explained by the version that answered."""
        canonical = ids.normalize(prediction_id)
        if canonical is None:
            raise ExplainError([{"loc": ["path", "prediction_id"], "msg": "Input should be a UUID, as the prediction "
                                 "endpoints answer it", "type": "uuid_parsing"}], "uuid_parsing")
        if not self.settings.prediction_log:
            raise PredictionNotFound("The prediction log is off (PREDICTION_LOG=false): no prediction can be found by "
                                     "id.", "log_off")
        logged = find_prediction(self.settings.prediction_log_path, canonical)
        if logged is None:
            raise PredictionNotFound(f"No prediction {canonical} in this server's prediction log.")
        model, served = self._version(logged)
        columns = list(model.input_schema["columns"])
        try:
            frame = _typed_frame(logged.inputs(columns), model.input_schema)
        except (ValueError, TypeError) as exc:
            raise ExplainError(f"Prediction {canonical} cannot be explained: {exc}.", "unusable_log_line") from None
        explanation = self.explain(model, frame, output)
        return {
            "prediction_id": canonical, "model_name": model.name, "model_version": model.version,
            "served_now": served, "ts": logged.ts.isoformat() if logged.ts else None, "endpoint": logged.endpoint,
            "probability": logged.probability, "inputs": {c: logged.fields[c] for c in columns},
            "output": output, "method": explanation.method, "background_rows": explanation.background_rows,
            **explanation.record(0),
        }

    def _version(self, logged: LoggedPrediction) -> tuple[StoredModel, bool]:
        """The exact version that answered: the served one when it still is, else loaded from the store."""
        for entry in self.predictor.registry.entries:
            if entry.model is not None and entry.model.name == logged.model_name \
                    and entry.model.version == logged.model_version:
                return entry.model, True
        tag = f"{logged.model_name}:{logged.model_version}"
        try:
            bentoml.models.get(tag)  # every time, even when loaded before: a version deleted since is gone (410)
        except bentoml.exceptions.NotFound:
            raise VersionGone(f"Prediction {logged.prediction_id} was made by {tag}, which is no longer in the model "
                              "store: it cannot be explained by the model that made it.") from None
        with self._lock:
            if tag in self._stored:
                self._stored.move_to_end(tag)
                return self._stored[tag], False
        model = load_model(tag)
        with self._lock:
            self._stored[tag] = model
            while len(self._stored) > 4:
                self._stored.popitem(last=False)
        return model, False


_DTYPES = {"integer": "int64", "number": "float64", "string": object}


def _typed_frame(values: dict[str, Any], schema: dict[str, Any]) -> pd.DataFrame:
    """One logged record as the model's input frame, each column of its schema's type (JSON has no int/float tag
    the log could keep: a whole float logged as 12.0 is the integer 12 again)."""
    frame = pd.DataFrame([values])
    for column, spec in schema["columns"].items():
        frame[column] = frame[column].astype(_DTYPES[spec["type"]])
    return frame
