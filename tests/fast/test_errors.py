"""One answer per kind of failure, in process: an unexpected failure inside each endpoint gets that endpoint's
documented 500 (never BentoML's `{"error": ...}`, never a traceback), and client errors carry their status."""

from __future__ import annotations

import pytest

from serving.core.predictor import Predictor
from tests.test_service import SEED_RECORDS


@pytest.fixture
def failing_model(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(Predictor, "score", boom)


@pytest.mark.parametrize(
    ("path", "payload", "media_type", "body"),
    [
        ("/predict", SEED_RECORDS[0], "application/json", b'{"detail":"Prediction failed; the error is in the server log."}'),
        ("/batch_predict", {"records": SEED_RECORDS}, "application/json",
         b'{"detail":"Prediction failed; the error is in the server log."}'),
    ],
)
def test_unexpected_failures_have_one_documented_shape_per_endpoint(server, failing_model, path, payload, media_type, body):
    response = server.post(path, payload)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith(media_type)
    assert response.content == body
    assert response.headers["x-request-id"]


def test_v1_failing_model_is_an_item_not_a_500(server, failing_model):
    body = server.post("/v1/predict", {"inputs": SEED_RECORDS, "predictions": [{"model_name": "purchase_gbm"}]}).json()
    [item] = body["predictions"]
    assert item["status"] == "InternalError" and "secret" not in item["error_message"]


def test_v1_whole_request_failure_is_text_plain(server, monkeypatch):
    import serving.web.multimodel as multimodel

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(multimodel, "_plan", broken)
    response = server.post("/v1/predict", {"predictions": [{"model_name": "drive_stats_a"}]})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "An unexpected error occurred while processing batch predictions"


def test_model_not_loaded_names_the_reason(server, monkeypatch):
    import bentoml

    predictor = bentoml.get_current_service().predictor

    def missing(routing_key):
        raise LookupError("purchase_gmb:latest: no such model in the store")

    monkeypatch.setattr(predictor, "purchase_model", missing)
    for path, payload in (("/predict", SEED_RECORDS[0]), ("/batch_predict", {"records": SEED_RECORDS})):
        response = server.post(path, payload)
        assert response.status_code == 503
        assert response.json() == {"detail": "Model is not loaded. purchase_gmb:latest: no such model in the store"}
