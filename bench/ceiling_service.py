"""The framework's own ceiling: a batchable BentoML API that answers a constant, with the service's settings.

It takes the purchase record schema (training.schema.PredictRequest, parsed by BentoML's own path), the very
`@bentoml.service` config and `/predict` batching parameters of service.py, and its connection policy
(serving/web/keepalive.py, which decides how two workers share the load), and calls no model: whatever
`/predict` loses against it is the cost of the service's own request path and model, not of BentoML.

    bentoml serve bench.ceiling_service:Ceiling --port 3002
    curl -s localhost:3002/predict -H 'content-type: application/json' -d '{"records": [{...one record...}]}'
"""

from __future__ import annotations

import bentoml

from service import PurchaseService, settings
from serving.web.keepalive import ConnectionAge
from training.schema import PredictRequest

_PREDICT = next(api for api in PurchaseService.apis.values() if api.route == "/predict")
ANSWER = {"predicted_purchase_probability": 0.5, "predicted_purchase": 0}


@bentoml.service(**{k: v for k, v in PurchaseService.config.items() if k != "name"})
class Ceiling:
    @bentoml.api(
        route="/predict",
        batchable=_PREDICT.batchable,
        max_batch_size=_PREDICT.max_batch_size,
        max_latency_ms=_PREDICT.max_latency_ms,
    )
    def predict(self, records: list[PredictRequest]) -> list[dict]:
        return [ANSWER] * len(records)


Ceiling.add_asgi_middleware(ConnectionAge, max_age=settings.max_connection_age_seconds)
