"""The V2 (Open Inference Protocol) routes in-process: the real router and Predictor over the session's model store,
served by Starlette's TestClient (fast tier: the many error cases; tests/test_v2_server.py runs a real server)."""

from __future__ import annotations

import copy

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.web import v2
from serving.codecs.arrow import ARROW_STREAM
from serving.client import from_arrow, to_arrow
from serving.core.predictor import Predictor
from settings import Settings
from training.data import generate_purchase
from training.schema import PURCHASE
from training.store import load_model

MAX_RECORDS = 50
MAX_BODY_BYTES = 64 * 1024
DATATYPES = {"student_country": "BYTES", "days_on_platform": "INT64", "minutes_watched": "FP64",
             "courses_started": "INT64", "practice_exams_started": "INT64", "practice_exams_passed": "INT64",
             "minutes_spent_on_exams": "FP64"}  # fmt: skip
INFER = "/v2/models/purchase_gbm/infer"


def students(n: int, seed: int = 3) -> pd.DataFrame:
    return generate_purchase(n, seed=seed).drop(columns="purchased")[PURCHASE.columns]


def v2_request(frame: pd.DataFrame, shape_rank: int = 2, **extra) -> dict:
    """The columnar body MLServer's pandas codec sends: one [rows, 1] tensor per column."""
    rows = len(frame)
    return {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": c, "datatype": DATATYPES[c], "shape": [rows, 1] if shape_rank == 2 else [rows],
             "data": frame[c].tolist()}
            for c in frame.columns
        ],
        **extra,
    }


@pytest.fixture(scope="module")
def client(trained_store, tmp_path_factory) -> TestClient:
    settings = Settings(
        served_models=["purchase_gbm:latest", "purchase_lr:latest", "ghost_model:latest"],
        prediction_log_path=tmp_path_factory.mktemp("v2") / "log.jsonl",
        max_records=MAX_RECORDS,
        max_body_bytes=MAX_BODY_BYTES,
    )
    predictor = Predictor(settings)
    app = FastAPI()
    app.include_router(v2.router)
    app.dependency_overrides[v2.current_predictor] = lambda: predictor
    yield TestClient(app)
    predictor.close()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return students(20)


@pytest.fixture(scope="module")
def expected(frame) -> np.ndarray:
    return load_model("purchase_gbm:latest").predict_proba(frame)


def outputs(response) -> dict[str, dict]:
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    return response.json()["error"]


def test_infer_answers_the_protocol_and_the_model(client, frame, expected):
    response = client.post(INFER, json=v2_request(frame, id="req-1"))
    body = response.json()
    assert body["model_name"] == "purchase_gbm" and body["id"] == "req-1"
    assert body["model_version"] == load_model("purchase_gbm:latest").version
    out = outputs(response)
    assert out["predict_proba"]["datatype"] == "FP64" and out["predict_proba"]["shape"] == [20, 1]
    assert out["predicted_class"]["datatype"] == "INT64"
    np.testing.assert_allclose(out["predict_proba"]["data"], expected, rtol=0, atol=1e-12)
    assert out["predicted_class"]["data"] == (expected >= 0.5).astype(int).tolist()


def test_flat_shapes_nested_data_integral_floats_and_requested_outputs(client, frame, expected):
    flat = outputs(client.post(INFER, json=v2_request(frame, shape_rank=1)))
    assert flat["predict_proba"]["shape"] == [20]
    nested = v2_request(frame)
    for tensor in nested["inputs"]:
        tensor["data"] = [[v] for v in tensor["data"]]
    np.testing.assert_allclose(outputs(client.post(INFER, json=nested))["predict_proba"]["data"], expected, atol=1e-12)
    floats = v2_request(frame)
    floats["inputs"][1] |= {"datatype": "FP64", "data": [float(v) for v in frame["days_on_platform"]]}  # 12.0 is 12
    np.testing.assert_allclose(outputs(client.post(INFER, json=floats))["predict_proba"]["data"], expected, atol=1e-12)
    only = outputs(client.post(INFER, json=v2_request(frame, outputs=[{"name": "predicted_class"}])))
    assert list(only) == ["predicted_class"]


def test_binary_tensor_extension_in_and_out(client, frame, expected):
    body = v2_request(frame, parameters={"binary_data_output": True})
    chunks = []
    for tensor in body["inputs"]:
        values = tensor.pop("data")
        if tensor["datatype"] == "BYTES":
            raw = b"".join(len(s.encode()).to_bytes(4, "little") + s.encode() for s in values)
        else:
            raw = np.asarray(values, dtype="<i8" if tensor["datatype"] == "INT64" else "<f8").tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        chunks.append(raw)
    header = orjson.dumps(body)
    response = client.post(INFER, content=header + b"".join(chunks), headers={
        "content-type": "application/octet-stream", "inference-header-content-length": str(len(header))})
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    meta = orjson.loads(response.content[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in meta["outputs"]]
    proba = np.frombuffer(response.content[length : length + sizes[0]], dtype="<f8")
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-12)


def test_arrow_in_v2_json_or_arrow_out(client, frame, expected):
    body = to_arrow(frame)
    out = outputs(client.post(INFER, content=body, headers={"content-type": ARROW_STREAM}))
    np.testing.assert_allclose(out["predict_proba"]["data"], expected, atol=1e-12)
    response = client.post(INFER, content=body, headers={"content-type": ARROW_STREAM, "accept": ARROW_STREAM})
    assert response.headers["content-type"] == ARROW_STREAM
    answer = from_arrow(response.content)
    assert list(answer.columns) == ["predict_proba", "predicted_class", "prediction_id"]
    assert answer.attrs["model_name"] == "purchase_gbm" and answer["prediction_id"].is_unique
    np.testing.assert_allclose(answer["predict_proba"], expected, atol=1e-12)


def _break(body: dict, column: str, **change) -> dict:
    broken = copy.deepcopy(body)
    for tensor in broken["inputs"]:
        if tensor["name"] == column:
            tensor.update(change)
    return broken


@pytest.mark.parametrize(
    "column, change, needles",
    [
        ("days_on_platform", {"data": [True] + [1] * 19}, ["'days_on_platform'", "row 0", "bool", "INT64"]),
        ("days_on_platform", {"data": ["12"] + [1] * 19}, ["'days_on_platform'", "row 0", "str"]),
        ("days_on_platform", {"datatype": "BYTES", "data": ["12"] * 20}, ["'days_on_platform'", "must hold integers"]),
        ("days_on_platform", {"datatype": "FP64", "data": [1.0] * 19 + [12.5]}, ["'days_on_platform'", "must be an integer", "19"]),
        ("minutes_watched", {"data": [1.0] * 5 + [-3.0] + [1.0] * 14}, ["'minutes_watched'", "must be >= 0", "rows, 0-based: 5"]),
        ("student_country", {"data": ["ok"] * 3 + [" "] + ["ok"] * 16}, ["'student_country'", "empty string", "3"]),
        ("student_country", {"data": [1] * 20}, ["'student_country'", "int", "BYTES"]),
        ("courses_started", {"datatype": "BOOL", "data": [True] * 20}, ["'courses_started'", "must hold integers, got bool"]),
        ("courses_started", {"shape": [20, 2]}, ["'courses_started'", "shape [20, 2]"]),
        ("courses_started", {"shape": [21, 1]}, ["'courses_started'", "needs 21 values, got 20"]),
        ("courses_started", {"datatype": "FOO"}, ["'courses_started'", "'FOO' is not supported"]),
        ("courses_started", {"name": "coupons"}, ["'coupons' is not an input", "'courses_started' is missing"]),
    ],
)
def test_bad_inputs_are_400_naming_input_and_row(client, frame, column, change, needles):
    message = error_of(client.post(INFER, json=_break(v2_request(frame), column, **change)), 400)
    for needle in needles:
        assert needle in message, message


def test_rule_names_rows_and_limits_hold(client, frame):
    body = v2_request(frame)
    passed = frame["practice_exams_started"].to_numpy() + np.arange(20) % 7 // 6  # rows 6 and 13 break it
    message = error_of(client.post(INFER, json=_break(body, "practice_exams_passed", data=passed.tolist())), 400)
    assert "practice_exams_passed cannot exceed practice_exams_started (offending rows, 0-based: 6, 13)" in message
    big = v2_request(students(MAX_RECORDS + 1))
    assert "over the limit of 50 (MAX_RECORDS)" in error_of(client.post(INFER, json=big), 400)
    huge = to_arrow(pd.concat([frame] * 200))  # 4,000 rows: over 64 kB
    assert len(huge) > MAX_BODY_BYTES
    assert "over the limit of 65536 bytes" in error_of(client.post(INFER, content=huge, headers={"content-type": ARROW_STREAM}), 413)
    assert "Invalid inference request" in error_of(client.post(INFER, content=b"{not json"), 400)
    assert "inputs" in error_of(client.post(INFER, json={"inputs": []}), 400)
    log_path = client.app.dependency_overrides[v2.current_predictor]().settings.prediction_log_path
    logged = log_path.read_bytes().count(b"\n")
    missing = error_of(client.post(INFER, json=v2_request(frame, outputs=[{"name": "predict"}])), 400)
    assert "'predict' do not exist" in missing
    assert log_path.read_bytes().count(b"\n") == logged  # refused before the model ran: nothing logged
    assert "Content-Type" in error_of(client.post(INFER, content=b"a,b", headers={"content-type": "text/csv"}), 415)
    arrow_bad = error_of(client.post(INFER, content=b"nope", headers={"content-type": ARROW_STREAM}), 400)
    assert "not an Arrow IPC stream" in arrow_bad
    typed = to_arrow(frame.astype({"courses_started": str}))
    arrow_type = error_of(client.post(INFER, content=typed, headers={"content-type": ARROW_STREAM}), 400)
    assert "input 'courses_started' must hold integers, got string values (offending rows, 0-based: 0, 1" in arrow_type


def test_health_metadata_and_unknown_or_unloaded_models(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert "ghost_model" in error_of(client.get("/v2/health/ready"), 503)
    meta = client.get("/v2").json()
    assert meta["name"] == "purchase_serving" and "binary_tensor_data" in meta["extensions"]
    model = client.get("/v2/models/purchase_lr").json()
    version = load_model("purchase_lr:latest").version
    assert model["versions"] == [version] and model["platform"] == "sklearn"
    assert [(i["name"], i["datatype"], i["shape"]) for i in model["inputs"]] == [
        (c, DATATYPES[c], [-1, 1]) for c in PURCHASE.columns
    ]
    assert [(o["name"], o["datatype"]) for o in model["outputs"]] == [("predict_proba", "FP64"), ("predicted_class", "INT64")]
    assert client.get(f"/v2/models/purchase_lr/versions/{version}").json() == model
    assert client.get(f"/v2/models/purchase_lr/versions/{version}/ready").status_code == 200
    assert client.get("/v2/models/purchase_lr/ready").json() == {"name": "purchase_lr", "ready": True}
    assert "'nope' is not served" in error_of(client.get("/v2/models/nope"), 404)
    assert "Version 'v0'" in error_of(client.get("/v2/models/purchase_lr/versions/v0/ready"), 404)
    assert "Version 'v0'" in error_of(client.post("/v2/models/purchase_lr/versions/v0/infer", json={}), 404)
    assert "not loaded" in error_of(client.get("/v2/models/ghost_model/ready"), 503)
    assert "not loaded" in error_of(client.post("/v2/models/ghost_model/infer", json={}), 503)
    assert "not loaded" in error_of(client.get("/v2/models/ghost_model"), 503)
