"""/v1/predict with shared inputs: the log converts the inputs to its columns once for every model, and each
model's rows must still carry the same inputs and its own predictions."""

from __future__ import annotations

import numpy as np

from monitoring.predictlog import iter_records
from tests.test_service import SEED_RECORDS, expected


def test_shared_inputs_are_logged_for_every_model(server):
    request_id = "v1-shared-log"
    payload = {"inputs": SEED_RECORDS, "predictions": [{"model_name": "purchase_gbm"}, {"model_name": "purchase_lr"}]}
    assert server.post("/v1/predict", payload, headers={"X-Request-ID": request_id}).status_code == 200
    lines = [r for r in iter_records(server.log_path) if r["request_id"] == request_id]
    for model in ("purchase_gbm", "purchase_lr"):
        mine = [r for r in lines if r["model_name"] == model]
        assert [{k: r[k] for k in SEED_RECORDS[0]} for r in mine] == SEED_RECORDS
        np.testing.assert_allclose([r["probability"] for r in mine], expected(model, SEED_RECORDS), atol=1e-12)
        assert [r["prediction"] for r in mine] == [int(p >= 0.5) for p in expected(model, SEED_RECORDS)]
