"""The HTTP surface: the list of routes, their payload schemas and their documented answers. Everything else
lives in serving/ (core: models and decisions; codecs: bodies; web: the doors and their policies).

    bentoml serve .          # bentofile.yaml points here; settings come from the environment (settings.py)

Every route declares its policy (token scope, media types and body limit, lane, error shape, name in metrics):
the BentoML APIs below with `@declare`, the mounted app's routes beside their handlers. A request meets
`serving.web.gate.Gate` first, which applies that policy: it checks the token, reads the body, admits it into the
route's typed input or answers the error (serving/web/errors.py), and only then the route runs.
"""

from __future__ import annotations

import serving.web.startup  # noqa: F401, I001 - first: port, settings and a metrics folder of its own (bentoml serve)

import bentoml
from fastapi import APIRouter, FastAPI
from starlette.responses import Response

from serving.codecs import arrow
from serving.core.explanations import Explanations
from serving.core.metrics import DriftGauges
from serving.core.predictor import Predictor
from serving.core.quality_gauges import QualityGauges
from serving.core.rollout_gauges import RolloutGauges
from serving.seam import AdmittedInput, BatchedInput, BatchedOutput, document, schema_of, signature_once
from serving.web import admin, explain, feedback, purchase, rollouts, v2
from serving.web.errors import DETAIL, documented, json_response
from serving.web.gate import DoorRoute, Gate
from serving.web.keepalive import ConnectionAge
from serving.web.multimodel import V1_PREDICT, V1Input, dump, predict_many
from serving.web.policy import Policy, Scope, declare, run_in
from serving.web.schemas import BatchPredictRequest as BatchPredictBody
from serving.web.schemas import BatchPredictResponse, ModelsResponse, PredictResponse as PredictPayload
from serving.web.schemas import V1PredictRequest as V1PredictBody
from serving.web.schemas import V1PredictResponse
from settings import get_settings
from training.schema import PredictRequest as PredictRecord

settings = get_settings()

# Seed 001's example records and seed 000's example request, shown as request examples in /docs.
SEED_RECORDS = [
    {"student_country": "United States", "days_on_platform": 45, "minutes_watched": 320.5, "courses_started": 3,
     "practice_exams_started": 5, "practice_exams_passed": 3, "minutes_spent_on_exams": 87.2},
    {"student_country": "Canada", "days_on_platform": 12, "minutes_watched": 45.0, "courses_started": 1,
     "practice_exams_started": 0, "practice_exams_passed": 0, "minutes_spent_on_exams": 0.0},
    {"student_country": "United Kingdom", "days_on_platform": 90, "minutes_watched": 1250.0, "courses_started": 8,
     "practice_exams_started": 12, "practice_exams_passed": 10, "minutes_spent_on_exams": 340.5},
]
SEED_V1 = {"predictions": [{"model_name": "drive_stats_a"}, {"model_name": "drive_stats_b"}]}


# Input specs: their fields document the bodies (and BentoML's client); the API receives the admitted input.
class PredictRequest(BatchedInput, PredictRecord):
    """One student's engagement record."""


class PredictResponse(BatchedOutput, PredictPayload):
    """One prediction, and the model that made it."""


class BatchPredictRequest(AdmittedInput, BatchPredictBody):
    """Student records, scored in one vectorized pass."""


class V1PredictRequest(AdmittedInput, V1PredictBody):
    """Several models' predictions in one request (seed 000)."""


# What is served and why not: no data, no secrets.
MODELS = Policy("/v1/models", Scope.PUBLIC, errors=DETAIL.failing("Listing the models failed; the error is in the server log."))
models = APIRouter(route_class=DoorRoute)


@models.get("/v1/models", response_model=ModelsResponse, tags=["Service APIs"])
@declare(MODELS)
async def list_models() -> dict:
    """Every configured model: version, labels, metrics, input schema, bound dataset, load status and error; and the
    stage book's traffic plan revision this worker follows, with the references it asks for that do not load."""
    predictor = bentoml.get_current_service().predictor
    follower = predictor.follower
    return {"models": predictor.registry.describe(),
            "traffic": {"revision": follower.plan.revision, "errors": dict(follower.plan_errors)}}


# /docs.json (BentoML's) describes these routes too; the app's own documents would only repeat it.
models_app = FastAPI(title="served models", openapi_url=None, docs_url=None, redoc_url=None)
models_app.include_router(models)
models_app.include_router(admin.router)
models_app.include_router(feedback.router)  # POST /v1/feedback
models_app.include_router(rollouts.router)  # GET /v1/rollouts, the rollout gate URL (serving/web/rollouts.py)
models_app.include_router(v2.router)  # the Open Inference Protocol (KServe V2): serving/web/v2.py
models_app.include_router(explain.router)  # POST /v1/explain, GET /v1/predictions/{id}/explanation: serving/web/explain.py


@bentoml.asgi_app(models_app, path="/")
@bentoml.service(
    name="purchase_serving",
    workers=settings.workers,
    # BentoML's thread limiter runs only /predict's batch function: big requests run on the bulk lane
    # (Lane.BULK, serving/web/policy.py), so a 10,000-record batch never queues a single record behind it.
    threads=1,
    traffic={"timeout": 120},
    logging={"access": {"enabled": settings.access_log}},
    # TRACING=false (the default): OpenTelemetry's middleware passes requests through without making spans.
    tracing={} if settings.tracing else {"excluded_urls": [".*"]},
)
class PurchaseService:
    """Student-purchase and drive-stats models from the BentoML model store."""

    def __init__(self) -> None:
        # Models load here, not as BentoModel attributes: a missing model must be reported, not abort serving.
        self.predictor = Predictor(settings)
        self.explanations = Explanations(self.predictor, settings)
        self.drift_gauges = DriftGauges(settings.drift_state_path)
        self.drift_gauges.start()
        self.quality_gauges = QualityGauges(settings.quality_state_path)
        self.quality_gauges.start()
        self.rollout_gauges = RolloutGauges()
        self.rollout_gauges.start()

    def __is_ready__(self) -> bool:
        """/readyz: the one readiness answer, also /v2/health/ready's (serving/core/readiness.py)."""
        return self.predictor.readiness().ready

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.drift_gauges.stop()
        self.quality_gauges.stop()
        self.rollout_gauges.stop()
        self.predictor.close()

    @bentoml.api(
        route="/predict",
        batchable=settings.batching,
        max_batch_size=settings.batch_max_size,
        max_latency_ms=settings.batch_max_latency_ms,
        input_spec=PredictRequest,
        output_spec=PredictResponse,
    )
    @declare(purchase.PREDICT)
    @signature_once
    def predict(self, records: list[purchase.PendingRecord]) -> list[purchase.Outcome]:
        """Predict one record. Concurrent calls are coalesced into one model call (adaptive batching)."""
        return purchase.predict_pending(self.predictor, records)

    @bentoml.api(route="/batch_predict", input_spec=BatchPredictRequest, output_spec=BatchPredictResponse)
    @declare(purchase.BATCH_PREDICT)
    @signature_once
    async def batch_predict(self, batch: purchase.BatchInput) -> Response:
        """Predict many records in one vectorized pass; predictions come back in input order."""
        return await run_in(purchase.BATCH_PREDICT.lane, purchase.batch_predict, self.predictor, batch)

    @bentoml.api(route="/v1/predict", input_spec=V1PredictRequest, output_spec=V1PredictResponse)
    @declare(V1_PREDICT)
    @signature_once
    async def v1_predict(self, v1: V1Input) -> Response:
        """Predict with several models at once (ensembles, A/B tests); one failing item never fails the others."""
        result = await predict_many(v1.body, self.predictor, v1.request_id, self.explanations)
        return json_response(200, dump(result), v1.request_id)


# Outermost first: the gate's refusals end an old connection too.
PurchaseService.add_asgi_middleware(ConnectionAge, max_age=settings.max_connection_age_seconds)
PurchaseService.add_asgi_middleware(Gate, service=PurchaseService, settings=settings)

DESCRIPTION = """\
Predictions from scikit-learn models kept in the BentoML model store.

* **POST /predict**: one student's engagement record as the whole body; the purchase probability back.
  Concurrent calls share one model call (adaptive batching).
* **POST /batch_predict**: `{"records": [...]}` (up to MAX_RECORDS), predictions in input order.
* **POST /v1/predict**: several models in one request (ensembles, A/B tests); one failing item never fails the others.
* **POST /v1/explain**, **GET /v1/predictions/{prediction_id}/explanation**: each input's contribution to a
  prediction (exact Shapley values), for records or for a past prediction by its id; `?format=html` draws them.
* **GET /v1/models**: the served models, their versions, metrics, input schemas and load status.

Errors: 422 names the record and the field (`loc`) or the broken rule; 413 and 415 for bodies that are too big or
not JSON; 503 when the model is not loaded. Every prediction is written to the prediction log; Prometheus metrics
are on /metrics.
"""
_FIELD_ERRORS = "Field errors (loc = ['body', field]) or the business rule, which JSON Schema cannot express: "
_TOKENS = {401: "No valid bearer token (when API_TOKENS is set).", 403: "The token does not grant the predict scope."}
_TOO_LARGE = "Body over MAX_BODY_BYTES."


def _responses(policy: Policy, answer: type, errors: dict[int, str], answer_content: dict | None = None) -> dict:
    ok = {"description": "Successful Response",
          "content": {"application/json": {"schema": schema_of(answer)},
                      **(answer_content or {})}}
    return {200: ok, **documented(policy.errors, {**_TOKENS, **errors})}


document(
    PurchaseService,
    description=DESCRIPTION,
    routes={
        "/predict": {
            "request": PredictRecord,
            "examples": {f"seed record {i}": {"value": r} for i, r in enumerate(SEED_RECORDS)},
            "responses": _responses(purchase.PREDICT, PredictPayload, {
                413: _TOO_LARGE,
                415: "Content-Type is not application/json.",
                422: _FIELD_ERRORS + "practice_exams_passed <= practice_exams_started.",
                503: "Model is not loaded (and why), or the adaptive batcher is overloaded.",
            }),
        },
        "/batch_predict": {
            "request": BatchPredictBody,
            "examples": {"seed 001 example": {"value": {"records": SEED_RECORDS}}},
            "request_content": arrow.REQUEST_DOC,  # an Arrow IPC stream, one column per input (serving/codecs/arrow.py)
            "responses": _responses(purchase.BATCH_PREDICT, BatchPredictResponse, {
                413: _TOO_LARGE,
                415: "Content-Type is neither application/json nor an Arrow stream.",
                422: "Field errors (loc = ['body', 'records', i, field]), an empty or oversized list, or the business "
                     "rule practice_exams_passed <= practice_exams_started, naming the records.",
                503: "Model is not loaded (and why).",
            }, arrow.BATCH_RESPONSE_DOC),
        },
        "/v1/predict": {
            "request": V1PredictBody,
            "examples": {
                "seed 000 example (bound datasets)": {"value": SEED_V1},
                "ensemble on shared inputs": {"value": {
                    "inputs": SEED_RECORDS[:1],
                    "predictions": [{"model_name": "purchase_gbm"}, {"model_name": "purchase_lr"}],
                    "ensemble": "mean",
                }},
            },
            "responses": _responses(V1_PREDICT, V1PredictResponse, {
                413: _TOO_LARGE,
                415: "Content-Type is not application/json.",
                422: "The request itself is malformed (per-item problems are BadRequest items in a 200).",
            }),
        },
    },
)
