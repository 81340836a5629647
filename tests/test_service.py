"""The HTTP contracts of both seeds, against a real `bentoml serve` process and a real model store."""

from __future__ import annotations

import asyncio
import copy
import json

import httpx
import numpy as np
import pandas as pd
import pytest

from monitoring.predictlog import iter_records
from tests.conftest import raw_post
from training.data import generate_purchase
from training.schema import PURCHASE
from training.store import load_model

# Seed 001's example request, verbatim.
SEED_RECORDS = [
    {"student_country": "United States", "days_on_platform": 45, "minutes_watched": 320.5, "courses_started": 3,
     "practice_exams_started": 5, "practice_exams_passed": 3, "minutes_spent_on_exams": 87.2},
    {"student_country": "Canada", "days_on_platform": 12, "minutes_watched": 45.0, "courses_started": 1,
     "practice_exams_started": 0, "practice_exams_passed": 0, "minutes_spent_on_exams": 0.0},
    {"student_country": "United Kingdom", "days_on_platform": 90, "minutes_watched": 1250.0, "courses_started": 8,
     "practice_exams_started": 12, "practice_exams_passed": 10, "minutes_spent_on_exams": 340.5},
]
# Seed 000's example request, verbatim.
SEED_V1 = {"predictions": [{"model_name": "drive_stats_a"}, {"model_name": "drive_stats_b"}]}


def expected(model_name: str, records: list[dict]) -> np.ndarray:
    return load_model(f"{model_name}:latest").predict_proba(pd.DataFrame(records, columns=PURCHASE.columns))


def students(n: int, seed: int) -> list[dict]:
    return generate_purchase(n, seed=seed).drop(columns="purchased").to_dict("records")


# --- /batch_predict ---------------------------------------------------------------------------------------------

def test_seed_batch_example_returns_three_predictions_in_order(server):
    response = server.post("/batch_predict", {"records": SEED_RECORDS})
    assert response.status_code == 200
    body = response.json()
    # The seed's two fields, plus the prediction id that outcomes are posted against (issue 13).
    assert [set(p) for p in body["predictions"]] == [{"predicted_purchase_probability", "predicted_purchase", "prediction_id"}] * 3
    proba = [p["predicted_purchase_probability"] for p in body["predictions"]]
    np.testing.assert_allclose(proba, expected("purchase_gbm", SEED_RECORDS), rtol=0, atol=1e-12)
    assert [p["predicted_purchase"] for p in body["predictions"]] == [int(p >= 0.5) for p in proba]
    assert body["model_name"] == "purchase_gbm"
    assert body["model_version"] == load_model("purchase_gbm:latest").version


def test_big_batch_keeps_input_order(server):
    records = students(2_000, seed=21)
    response = server.post("/batch_predict", {"records": records})
    assert response.status_code == 200
    proba = [p["predicted_purchase_probability"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(proba, expected("purchase_gbm", records), rtol=0, atol=1e-12)


def test_field_errors_name_record_and_field(server):
    records = copy.deepcopy(SEED_RECORDS)
    records[1]["days_on_platform"] = -3
    records[2]["minutes_watched"] = "lots"
    del records[0]["student_country"]
    response = server.post("/batch_predict", {"records": records})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert {tuple(e["loc"]) for e in detail} == {
        ("body", "records", 0, "student_country"),
        ("body", "records", 1, "days_on_platform"),
        ("body", "records", 2, "minutes_watched"),
    }
    assert all(e["msg"] and e["type"] for e in detail)


def test_empty_records_is_422_on_records(server):
    response = server.post("/batch_predict", {"records": []})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "records"] and error["type"] == "too_short"


def test_business_rule_names_the_offending_records(server):
    records = copy.deepcopy(SEED_RECORDS)
    records[0]["practice_exams_passed"] = 6
    records[2]["practice_exams_passed"] = 13
    response = server.post("/batch_predict", {"records": records})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("practice_exams_passed cannot exceed practice_exams_started.")
    assert "records (0-based): 0, 2." in detail


@pytest.mark.parametrize(
    ("body", "content_type", "status", "needle"),
    [
        (b'{"records": [', "application/json", 422, "json_invalid"),
        (b'{"records": 5}', "application/json", 422, "list_type"),
        (b"records=1", "application/x-www-form-urlencoded", 415, "application/json"),
        (b'{"rows": []}', "application/json", 422, "missing"),
    ],
)
def test_malformed_bodies_are_client_errors(server, body, content_type, status, needle):
    response = raw_post(server, "/batch_predict", body, content_type)
    assert response.status_code == status
    assert needle in response.text


# --- /predict ---------------------------------------------------------------------------------------------------

def test_predict_one_record(server):
    response = server.post("/predict", SEED_RECORDS[0])
    assert response.status_code == 200
    body = response.json()
    assert body["predicted_purchase_probability"] == pytest.approx(expected("purchase_gbm", SEED_RECORDS[:1])[0], abs=1e-12)
    assert body["predicted_purchase"] == int(body["predicted_purchase_probability"] >= 0.5)
    assert body["model_name"] == "purchase_gbm"


@pytest.mark.parametrize(
    ("change", "loc", "kind"),
    [
        ({"courses_started": -1}, ["body", "courses_started"], "greater_than_equal"),
        ({"minutes_watched": "a lot"}, ["body", "minutes_watched"], "float_type"),
        ({"student_country": ""}, ["body", "student_country"], "string_too_short"),
        ({"coupon": "X"}, ["body", "coupon"], "extra_forbidden"),
        ({"days_on_platform": 2.5}, ["body", "days_on_platform"], "int_from_float"),
    ],
)
def test_predict_field_errors(server, change, loc, kind):
    response = server.post("/predict", {**SEED_RECORDS[1], **change})
    assert response.status_code == 422
    assert {"loc": loc, "type": kind} in [{"loc": e["loc"], "type": e["type"]} for e in response.json()["detail"]]


def test_predict_business_rule(server):
    response = server.post("/predict", {**SEED_RECORDS[1], "practice_exams_passed": 1})
    assert response.status_code == 422
    assert response.json() == {"detail": "practice_exams_passed cannot exceed practice_exams_started."}


def test_batch_body_on_predict_says_where_it_belongs(server):
    response = server.post("/predict", {"records": SEED_RECORDS})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "records"] and "/batch_predict" in error["msg"]


def test_concurrent_predicts_are_batched_and_answer_their_own_record(server):
    records = students(96, seed=33)

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/predict", json=r) for r in records))

    def batches() -> tuple[float, float]:
        text = server.get("/metrics").text
        count = sum(float(l.split()[-1]) for l in text.splitlines()
                    if l.startswith("bentoml_service_adaptive_batch_size_count") and 'method_name="predict"' in l)
        total = sum(float(l.split()[-1]) for l in text.splitlines()
                    if l.startswith("bentoml_service_adaptive_batch_size_sum") and 'method_name="predict"' in l)
        return count, total

    count_before, sum_before = batches()
    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * len(records)
    proba = [r.json()["predicted_purchase_probability"] for r in responses]
    np.testing.assert_allclose(proba, expected("purchase_gbm", records), rtol=0, atol=1e-12)
    count_after, sum_after = batches()
    assert sum_after - sum_before == len(records)
    assert count_after - count_before < len(records), "no two requests shared a model call"


# --- /v1/predict and /v1/models -----------------------------------------------------------------------------------

def test_seed_v1_example_predicts_from_bound_datasets(server):
    response = server.post("/v1/predict", SEED_V1)
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["duration_ms"], int) and body["duration_ms"] >= 0
    for item, name in zip(body["predictions"], ["drive_stats_a", "drive_stats_b"]):
        model = load_model(f"{name}:latest")
        assert item["status"] == "Success" and item["model_name"] == name and item["error_message"] is None
        assert item["model_version"] == model.version and isinstance(item["duration_ms"], int)
        np.testing.assert_allclose(item["prediction"], model.predict_proba(model.bound), rtol=0, atol=1e-12)


def test_v1_one_bad_item_does_not_fail_the_others(server):
    version = load_model("purchase_lr:latest").version
    payload = {
        "inputs": SEED_RECORDS,
        "predictions": [
            {"model_name": "purchase_gbm"},
            {"model_name": "no_such_model"},
            {"model_name": "purchase_lr", "model_version": version},
            {"model_name": "purchase_lr", "model_version": "v0nexistent"},
            {"model_name": "drive_stats_a", "inputs": [{"drive_model": "X", "capacity_tb": -1}]},
        ],
    }
    body = server.post("/v1/predict", payload).json()
    statuses = [(p["status"], p["model_name"]) for p in body["predictions"]]
    assert statuses == [("Success", "purchase_gbm"), ("BadRequest", "no_such_model"), ("Success", "purchase_lr"),
                        ("BadRequest", "purchase_lr"), ("BadRequest", "drive_stats_a")]
    messages = [p["error_message"] for p in body["predictions"]]
    assert "'no_such_model' is not served" in messages[1]
    assert "'v0nexistent'" in messages[3] and version in messages[3]
    assert "predictions[4].inputs[0].capacity_tb" in messages[4] and "power_on_hours" in messages[4]
    assert body["predictions"][2]["model_version"] == version
    np.testing.assert_allclose(body["predictions"][2]["prediction"], expected("purchase_lr", SEED_RECORDS), atol=1e-12)


def test_v1_ensemble_is_the_weighted_mean(server):
    payload = {"inputs": SEED_RECORDS, "predictions": [{"model_name": "purchase_gbm"}, {"model_name": "purchase_lr"}]}
    gbm, lr = expected("purchase_gbm", SEED_RECORDS), expected("purchase_lr", SEED_RECORDS)
    mean = server.post("/v1/predict", {**payload, "ensemble": "mean"}).json()["ensemble"]
    np.testing.assert_allclose(mean["prediction"], (gbm + lr) / 2, atol=1e-12)
    weighted = server.post(
        "/v1/predict", {**payload, "ensemble": {"method": "mean", "weights": {"purchase_gbm": 3, "purchase_lr": 1}}}
    ).json()["ensemble"]
    np.testing.assert_allclose(weighted["prediction"], (3 * gbm + lr) / 4, atol=1e-12)
    assert weighted["models"] == ["purchase_gbm", "purchase_lr"] and weighted["weights"] == [3.0, 1.0]


def test_v1_invalid_shared_inputs_fail_each_item_that_uses_them(server):
    records = copy.deepcopy(SEED_RECORDS)
    records[1]["practice_exams_passed"] = 9
    payload = {"inputs": records, "predictions": [{"model_name": "purchase_gbm"}, {"model_name": "drive_stats_a"}]}
    body = server.post("/v1/predict", payload).json()
    first, second = body["predictions"]
    assert first["status"] == "BadRequest" and "Offending inputs (0-based): 1." in first["error_message"]
    assert second["status"] == "BadRequest" and "inputs[0]" in second["error_message"]


@pytest.mark.parametrize(
    "payload",
    [
        {"predictions": []},
        {"predictions": [{"model_name": "drive_stats_a"}] + [{"model_name": f"m{i}"} for i in range(16)]},
        {"predictions": [{"model_name": "drive_stats_a"}, {"model_name": "drive_stats_a"}]},
        {"predictions": [{"model_name": "../../etc/passwd"}]},
        {"predictions": [{"model_name": "drive_stats_a", "unknown": 1}]},
        {"models": ["drive_stats_a"]},
    ],
)
def test_v1_malformed_requests_are_422(server, payload):
    response = server.post("/v1/predict", payload)
    assert response.status_code == 422
    assert all(e["loc"][0] == "body" for e in response.json()["detail"])


def test_models_endpoint_describes_every_model(server):
    models = {m["name"]: m for m in server.get("/v1/models").json()["models"]}
    assert set(models) == {"purchase_gbm", "purchase_lr", "drive_stats_a", "drive_stats_b"}
    for name, described in models.items():
        stored = load_model(f"{name}:latest")
        assert described["status"] == "loaded" and described["error"] is None
        assert described["version"] == stored.version and described["labels"] == stored.labels
        assert described["metrics"]["roc_auc"] == stored.metadata["metrics"]["roc_auc"]
        assert described["input_schema"] == stored.input_schema
    assert models["drive_stats_a"]["bound_dataset"]["rows"] == 1_000
    assert models["purchase_gbm"]["bound_dataset"] is None


def test_health_and_openapi(server):
    assert server.get("/livez").status_code == 200
    assert server.get("/readyz").status_code == 200
    spec = server.get("/docs.json").json()
    batch = spec["paths"]["/batch_predict"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"]["properties"]["records"]["maxItems"] == 10_000
    assert {"200", "413", "415", "422", "503"} <= set(batch["responses"])
    predict = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(predict["properties"]) == set(PURCHASE.columns)
    assert "500" in spec["paths"]["/v1/predict"]["post"]["responses"]
    assert "/v1/models" in spec["paths"]
    def ok_schema(path: str) -> dict:
        return spec["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]

    assert {"predictions", "model_name", "model_version"} <= set(ok_schema("/batch_predict")["properties"])
    assert {"duration_ms", "predictions"} <= set(ok_schema("/v1/predict")["properties"])
    item = spec["components"]["schemas"]["ModelPrediction"]
    assert item["properties"]["status"]["enum"] == ["Success", "BadRequest", "InternalError"]


def test_docs_describe_the_product_with_seed_examples(server):
    spec = server.get("/docs.json").json()
    description = spec["info"]["description"]
    assert "/batch_predict" in description and "created with BentoML" not in description
    assert "![" not in description and "http" not in description, "no badge images or links to fetch"
    examples = spec["paths"]["/batch_predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert [e["value"] for e in examples.values()] == [{"records": SEED_RECORDS}]
    v1 = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert SEED_V1 in [e["value"] for e in v1.values()]
    for path, media_type in (("/predict", "application/json"), ("/batch_predict", "application/json"),
                             ("/v1/predict", "text/plain")):
        assert list(spec["paths"][path]["post"]["responses"]["500"]["content"]) == [media_type]


def test_bentoml_client_keyword_form(server):
    """BentoML's own client: keyword arguments are the body's fields, on every endpoint."""
    import bentoml

    with bentoml.SyncHTTPClient(server.url) as client:
        batch = client.batch_predict(records=SEED_RECORDS)
        one = client.predict(**SEED_RECORDS[0])
        v1 = client.v1_predict(predictions=SEED_V1["predictions"])
    proba = [p["predicted_purchase_probability"] for p in batch["predictions"]]
    np.testing.assert_allclose(proba, expected("purchase_gbm", SEED_RECORDS), rtol=0, atol=1e-12)
    assert one["predicted_purchase_probability"] == proba[0]
    assert [p["status"] for p in v1["predictions"]] == ["Success", "Success"]


def test_rejected_predicts_never_reach_the_batcher(server):
    def batched() -> float:
        return sum(float(l.split()[-1]) for l in server.get("/metrics").text.splitlines()
                   if l.startswith("bentoml_service_adaptive_batch_size_sum") and 'method_name="predict"' in l)

    before = batched()
    bad = [(json.dumps({**SEED_RECORDS[1], "courses_started": -1}).encode(), "application/json", 422),
           (b"x=1", "application/x-www-form-urlencoded", 415),
           (b'{"records": [' + b" " * 33_554_432 + b"]}", "application/json", 413)]
    for body, content_type, status in bad:
        assert raw_post(server, "/predict", body, content_type).status_code == status
    assert batched() == before


# --- other configurations ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ab_server(start_server):
    return start_server({"AB_WEIGHTS": "purchase_gbm=0.5,purchase_lr=0.5", "MAX_RECORDS": "50"})


def test_ab_routing_is_sticky_and_split_by_weight(ab_server):
    def model_for(key: str) -> str:
        return ab_server.post("/predict", SEED_RECORDS[0], headers={"X-Routing-Key": key}).json()["model_name"]

    assert len({model_for("student-42") for _ in range(10)}) == 1
    chosen = [model_for(f"user-{i}") for i in range(300)]
    share = chosen.count("purchase_lr") / len(chosen)
    assert 0.4 < share < 0.6, share
    batch = ab_server.post("/batch_predict", {"records": SEED_RECORDS}, headers={"X-Routing-Key": "student-42"}).json()
    assert batch["model_name"] == model_for("student-42")
    lines = [r for r in iter_records(ab_server.log_path) if r["routing_key"] == "student-42"]
    assert len(lines) >= 10 + 3 and all(r["model_name"] == batch["model_name"] for r in lines)


def test_records_limit_names_the_limit(ab_server):
    response = ab_server.post("/batch_predict", {"records": SEED_RECORDS * 17})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "records"] and "at most 50 items" in error["msg"]


@pytest.fixture(scope="module")
def broken_server(start_server):
    return start_server(
        {"SERVED_MODELS": "ghost_model:latest,drive_stats_a:latest", "DEFAULT_PURCHASE_MODEL": "ghost_model"},
        ready=False,
    )


def test_model_not_loaded(broken_server):
    assert broken_server.get("/readyz").status_code == 503
    assert broken_server.get("/livez").status_code == 200
    for path, payload in (("/batch_predict", {"records": SEED_RECORDS}), ("/predict", SEED_RECORDS[0])):
        response = broken_server.post(path, payload)
        assert response.status_code == 503
        # The seed's message, then which model and why (a typo in SERVED_MODELS is the usual cause).
        detail = response.json()["detail"]
        assert detail.startswith("Model is not loaded. ghost_model:latest: no such model in the store; the store has: ")
        assert "purchase_gbm" in detail.split("the store has: ")[1]
    models = {m["name"]: m for m in broken_server.get("/v1/models").json()["models"]}
    assert models["ghost_model"]["error"].startswith("no such model in the store; the store has: ")
    assert models["drive_stats_a"]["status"] == "loaded"
    body = broken_server.post("/v1/predict", {"predictions": [{"model_name": "ghost_model"}, {"model_name": "drive_stats_a"}]}).json()
    assert [p["status"] for p in body["predictions"]] == ["InternalError", "Success"]
    assert "failed to load" in body["predictions"][0]["error_message"]
    assert 'serving_model_loaded{model="ghost_model",version="none"} 0.0' in broken_server.get("/metrics").text


def test_overloaded_batcher_says_so(start_server):
    server = start_server({"BATCH_MAX_LATENCY_MS": "5", "BATCH_MAX_SIZE": "4"})
    records = students(64, seed=5)

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/predict", json=r) for r in records * 2))

    responses = asyncio.run(fire())
    overloaded = [r for r in responses if r.status_code == 503]
    assert overloaded, "no request exceeded a 5 ms batching bound"
    assert all("overloaded" in r.json()["detail"] for r in overloaded)
    assert {r.status_code for r in responses} <= {200, 503}
    assert server.post("/predict", records[0]).status_code in (200, 503)
