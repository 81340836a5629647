"""The HTTP surface: routes, payload schemas and status codes. Everything else lives in serving/.

    bentoml serve .          # bentofile.yaml points here; settings come from the environment (settings.py)
"""

from __future__ import annotations

import logging
from typing import ClassVar

import bentoml
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.responses import PlainTextResponse, Response

from serving import purchase, v2
from serving.arrow import ARROW_STREAM
from serving.http import (
    JSON_TYPES,
    Call,
    OverloadedAsJSON,
    RawJSONInput,
    SingleRecordInput,
    SingleRecordOutput,
    document_error_responses,
    json_response,
    rejection,
)
from serving.metrics import DriftGauges
from serving.multimodel import predict_many
from serving.predictor import Predictor
from serving.schemas import BatchPredictRequest as BatchPredictBody
from serving.schemas import BatchPredictResponse, ModelsResponse, PredictResponse as PredictPayload
from serving.schemas import V1PredictRequest as V1PredictBody
from serving.schemas import V1PredictResponse
from serving.validation import RecordsValidator, RequestRejected, error_reason, fastapi_errors, purchase_validator
from settings import get_settings
from training.schema import PredictRequest as PredictRecord

logger = logging.getLogger("bentoml.service")
settings = get_settings()
UNEXPECTED = "An unexpected error occurred while processing batch predictions"


# Input specs: the field lists document the bodies in /docs.json; serving/http.py explains the overrides.
class PredictRequest(SingleRecordInput, PredictRecord):
    """One student's engagement record."""

    validator: ClassVar[RecordsValidator] = purchase_validator(settings.max_records)


class PredictResponse(SingleRecordOutput, PredictPayload):
    """One prediction, and the model that made it."""


class BatchPredictRequest(RawJSONInput, BatchPredictBody):
    endpoint: ClassVar[str] = "/batch_predict"
    media_types: ClassVar[tuple[str, ...]] = (*JSON_TYPES, ARROW_STREAM)  # Arrow: serving/arrow.py


class V1PredictRequest(RawJSONInput, V1PredictBody):
    endpoint: ClassVar[str] = "/v1/predict"


models_app = FastAPI(title="served models")


@models_app.get("/v1/models", response_model=ModelsResponse, tags=["Service APIs"])
def list_models() -> dict:
    """Every configured model: version, labels, metrics, input schema, bound dataset, load status and error."""
    return {"models": bentoml.get_current_service().predictor.registry.describe()}


models_app.include_router(v2.router)  # the Open Inference Protocol (KServe V2): serving/v2.py
document_error_responses()


@bentoml.asgi_app(models_app, path="/")
@bentoml.service(name="purchase_serving", workers=settings.workers, traffic={"timeout": 120})
class PurchaseService:
    """Student-purchase and drive-stats models from the BentoML model store."""

    def __init__(self) -> None:
        # Models load here, not as BentoModel attributes: a missing model must be reported, not abort serving.
        self.predictor = Predictor(settings)
        self.drift_gauges = DriftGauges(settings.drift_state_path)
        self.drift_gauges.start()

    def __is_ready__(self) -> bool:
        """/readyz: 503 until every configured model is loaded (GET /v1/models says which one is not)."""
        return all(entry.status == "loaded" for entry in self.predictor.registry.entries)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.drift_gauges.stop()
        self.predictor.close()

    @bentoml.api(
        route="/predict",
        batchable=settings.batching,
        max_batch_size=settings.batch_max_size,
        max_latency_ms=settings.batch_max_latency_ms,
        input_spec=PredictRequest,
        output_spec=PredictResponse,
    )
    def predict(self, items: list) -> list:
        """Predict one record. Concurrent calls are coalesced into one model call (adaptive batching)."""
        return purchase.predict_pending(self.predictor, items)

    @bentoml.api(route="/batch_predict", input_spec=BatchPredictRequest, output_spec=BatchPredictResponse)
    def batch_predict(self, call: Call) -> Response:
        """Predict many records in one vectorized pass; predictions come back in input order."""
        return purchase.batch_predict(self.predictor, PredictRequest.validator, call)

    @bentoml.api(route="/v1/predict", input_spec=V1PredictRequest, output_spec=V1PredictResponse)
    async def v1_predict(self, call: Call) -> Response:
        """Predict with several models at once (ensembles, A/B tests); one failing item never fails the others."""
        if call.rejected is not None:
            return call.rejected
        try:
            body = V1PredictBody.model_validate_json(call.body)
        except ValidationError as exc:
            return rejection(RequestRejected(422, fastapi_errors(exc), error_reason(exc)), "/v1/predict", call.request_id)
        try:
            result = await predict_many(body, self.predictor, call.request_id)
        except Exception:  # noqa: BLE001 - the seed's 500 is text/plain, and says nothing internal
            logger.exception("/v1/predict failed as a whole")
            return PlainTextResponse(UNEXPECTED, status_code=500)
        return json_response(200, result.model_dump(mode="json"), call.request_id)


PurchaseService.add_asgi_middleware(OverloadedAsJSON)
