"""POST /v1/predict: several models in one request (seed 000), for ensembles and A/B comparisons.

Each item resolves its model and inputs on its own, so one bad item is a `BadRequest` (or `InternalError`) while
the others succeed. Shared inputs are validated once per input schema, not once per item; the model calls then
run concurrently in threads (scikit-learn releases the GIL in its heavy loops).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import ValidationError

from serving.codecs.errors import CodecError
from serving.codecs.media import JSON
from serving.codecs.records import RecordsValidator, error_reason, fastapi_errors, validator_for
from serving.core.explanations import Explanations, over_limit
from serving.core.predictor import Predictor
from serving.core.registry import ModelEntry, ModelUnavailable
from serving.errors import ServingError
from serving.web.errors import TEXT
from serving.web.gate import Call
from serving.web.policy import Lane, Policy, Scope, run_in
from serving.web.schemas import Ensemble, EnsemblePrediction, ModelPrediction, ModelPredictRequest, V1PredictRequest, V1PredictResponse

logger = logging.getLogger(__name__)
BOUND_KEY = "serial_number"


@dataclass
class V1Input:
    """An admitted /v1/predict request."""

    body: V1PredictRequest
    request_id: str


def admit_v1(_: Predictor, call: Call) -> V1Input:
    try:
        return V1Input(V1PredictRequest.model_validate_json(call.body), call.request_id)
    except ValidationError as exc:
        raise CodecError(fastapi_errors(exc), error_reason(exc)) from None


# Client errors in FastAPI's shape; an unexpected failure of the whole request is seed 000's text/plain 500.
V1_PREDICT = Policy("/v1/predict", Scope.PREDICT, Lane.BULK, TEXT, (JSON,), admit=admit_v1)


def _ms(since: float) -> int:
    return max(0, round((time.perf_counter() - since) * 1000))


@dataclass
class Planned:
    """An item whose model and inputs are resolved, or the answer it already has."""

    item: ModelPredictRequest
    started: float
    entry: ModelEntry | None = None
    frame: pd.DataFrame | None = None
    answer: ModelPrediction | None = None
    shared: bool = False  # the frame is the request's shared inputs, scored by other items too
    serial_numbers: list[str] | None = None  # a bound dataset's row identities, answered and logged

    def fail(self, status: str, message: str) -> None:
        version = self.entry.version if self.entry else self.item.model_version
        self.answer = ModelPrediction(
            status=status,  # type: ignore[arg-type]
            model_name=self.item.model_name,
            model_version=version,
            duration_ms=_ms(self.started),
            error_message=message,
        )


def _plan(index: int, item: ModelPredictRequest, body: V1PredictRequest, predictor: Predictor,
          shared: dict[int, pd.DataFrame | ValueError]) -> Planned:
    plan = Planned(item, time.perf_counter())
    try:
        plan.entry = predictor.registry.get(item.model_name, item.model_version)
    except ModelUnavailable as exc:
        plan.fail("InternalError", str(exc))
        return plan
    except LookupError as exc:
        plan.fail("BadRequest", str(exc.args[0]))
        return plan
    model = plan.entry.model
    assert model is not None
    validator = validator_for(model, predictor.settings.max_records)
    try:
        if item.inputs is not None:
            plan.frame = validator.records(item.inputs, f"predictions[{index}].inputs")
        elif body.inputs is not None:
            plan.frame = _shared_frame(validator, body.inputs, shared)
            plan.shared = True
        elif model.bound is not None:
            plan.frame = model.bound[validator.columns]
            if BOUND_KEY in model.bound.columns:
                plan.serial_numbers = model.bound[BOUND_KEY].astype(str).tolist()
        else:
            raise ValueError(f"model {item.model_name!r} has no bound dataset: send `inputs` with the item or request")
        too_many = item.explain and over_limit(len(plan.frame), model, predictor.settings.max_explain_records)
        if too_many:
            raise ValueError(f"predictions[{index}].explain: {too_many}")
    except ValueError as exc:
        plan.fail("BadRequest", str(exc))
    return plan


def _shared_frame(validator: RecordsValidator, inputs: list, cache: dict[int, pd.DataFrame | ValueError]) -> pd.DataFrame:
    key = id(validator)  # one validator per input schema (the registry shares them)
    if key not in cache:
        try:
            cache[key] = validator.records(inputs, "inputs")
        except ValueError as exc:
            cache[key] = exc
    result = cache[key]
    if isinstance(result, ValueError):
        raise result
    return result


async def _run(plan: Planned, predictor: Predictor, request_id: str, explanations: Explanations | None) -> ModelPrediction:
    if plan.answer is not None:
        return plan.answer
    assert plan.entry is not None and plan.frame is not None
    row_keys = {BOUND_KEY: plan.serial_numbers} if plan.serial_numbers is not None else None
    try:
        scored = await run_in(
            V1_PREDICT.lane,
            lambda: predictor.score(plan.entry, plan.frame, endpoint=V1_PREDICT.name, request_id=request_id,
                                    shared_inputs=plan.shared, row_keys=row_keys),
        )
    except Exception as exc:  # noqa: BLE001 - one model raising must not fail the other items
        logger.exception("model %s raised", plan.entry.requested)
        plan.fail("InternalError", f"model {plan.item.model_name!r} raised {type(exc).__name__}; see the server log")
        return plan.answer  # type: ignore[return-value]
    explained, not_explained = None, None
    if plan.item.explain and explanations is not None:
        # In the explanation lane, never the bulk lane. The prediction is made and logged: it stands whatever
        # becomes of its explanation, and `error_message` says why there is none.
        try:
            explained = (await run_in(Lane.EXPLAIN, explanations.explain, plan.entry.model, plan.frame)).records()
        except ServingError as exc:  # the explanation lane is full, or this call waited too long for it
            not_explained = f"explain: {exc.detail} The prediction stands, without explanations."
        except Exception as exc:  # noqa: BLE001
            logger.exception("explaining %s failed", plan.entry.requested)
            not_explained = (f"explain: explaining with model {plan.item.model_name!r} raised {type(exc).__name__}; "
                             "see the server log. The prediction stands, without explanations.")
    return ModelPrediction(
        status="Success",
        model_name=plan.entry.name,  # the concrete model, also when the item named an alias (task@stage)
        model_version=plan.entry.version,
        prediction=scored.proba.tolist(),
        prediction_ids=scored.ids,
        serial_numbers=plan.serial_numbers,
        duration_ms=_ms(plan.started),
        error_message=not_explained,
        explanations=explained,
    )


def combine(spec: Ensemble, answers: list[ModelPrediction]) -> EnsemblePrediction:
    """The weighted mean of the successful items' predictions, which must cover the same records."""
    ok = [a for a in answers if a.status == "Success" and a.prediction is not None]
    weights = [float((spec.weights or {}).get(a.model_name, 1.0 if spec.weights is None else 0.0)) for a in ok]
    result = EnsemblePrediction(method=spec.method, models=[a.model_name for a in ok], weights=weights)
    if not ok:
        result.error_message = "no item succeeded"
    elif len({len(a.prediction) for a in ok}) > 1:  # type: ignore[arg-type]
        result.error_message = "items predicted different numbers of records; an ensemble needs the same inputs"
    elif sum(weights) <= 0:
        result.error_message = "ensemble weights of the successful items sum to zero"
    else:
        stacked = np.asarray([a.prediction for a in ok], dtype=np.float64)
        result.prediction = (np.asarray(weights) @ stacked / sum(weights)).tolist()
    return result


async def predict_many(body: V1PredictRequest, predictor: Predictor, request_id: str,
                       explanations: Explanations | None = None) -> V1PredictResponse:
    started = time.perf_counter()
    shared: dict[int, pd.DataFrame | ValueError] = {}
    # Validating the items' inputs (thousands of records, maybe) runs in the route's lane too, off the event loop.
    plans = await run_in(
        V1_PREDICT.lane, lambda: [_plan(i, item, body, predictor, shared) for i, item in enumerate(body.predictions)]
    )
    answers = list(await asyncio.gather(*(_run(plan, predictor, request_id, explanations) for plan in plans)))
    ensemble = None
    if body.ensemble is not None:
        spec = Ensemble() if body.ensemble == "mean" else body.ensemble
        ensemble = combine(spec, answers)  # type: ignore[arg-type]
    return V1PredictResponse(duration_ms=_ms(started), predictions=answers, ensemble=ensemble)


def dump(response: V1PredictResponse) -> dict:
    """The answer as JSON, `explanations` only on the items that asked for them: the seed's item shape is unchanged
    otherwise, and BentoML's own client cannot decode a null list of objects."""
    unasked = {i: {"explanations"} for i, item in enumerate(response.predictions) if item.explanations is None}
    return response.model_dump(mode="json", exclude={"predictions": unasked} if unasked else None)
