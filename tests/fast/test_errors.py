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


def test_feedback_has_its_documented_500(server, monkeypatch):
    """/v1/feedback had no 500 of its own: an unexpected failure is now its declared DETAIL answer."""
    from serving.web import feedback

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(feedback, "outcome_store", broken)
    outcome = {"prediction_id": "019ab1c2-3d4e-7f00-8a1b-2c3d4e5f6a7b", "outcome": 1}
    response = server.post("/v1/feedback", {"outcomes": [outcome]})
    assert response.status_code == 500 and response.headers["x-request-id"]
    assert response.json() == {"detail": feedback.FAILED} and "secret" not in response.text
    spec = server.get("/docs.json").json()
    assert spec["paths"]["/v1/feedback"]["post"]["responses"]["500"]["content"]["application/json"]["example"] == {
        "detail": feedback.FAILED}


def test_v2_infer_has_its_documented_500(server, failing_model):
    body = {"inputs": [{"name": c, "shape": [1], "datatype": t, "data": [v]} for c, t, v in (
        ("student_country", "BYTES", "Canada"), ("days_on_platform", "INT64", 12), ("minutes_watched", "FP64", 45.0),
        ("courses_started", "INT64", 1), ("practice_exams_started", "INT64", 0), ("practice_exams_passed", "INT64", 0),
        ("minutes_spent_on_exams", "FP64", 0.0))]}
    response = server.post("/v2/models/purchase_gbm/infer", body)
    assert response.status_code == 500
    assert response.json() == {"error": "Prediction failed; the error is in the server log."}
