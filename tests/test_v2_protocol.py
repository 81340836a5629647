"""The V2 (Open Inference Protocol) routes in-process: the real router and Predictor over the session's model store,
served by Starlette's TestClient (fast tier: the many error cases; tests/test_v2_server.py runs a real server)."""

from __future__ import annotations

import base64
import copy
import gzip
import zlib

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from monitoring.predictlog import iter_records, read_log
from serving.web import v2
from serving.web.gate import Gate
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
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(v2.router)
    app.add_middleware(Gate, service=None, settings=settings)  # the routes' policies: media types, body limits
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


def post_binary(client, body: dict, encode=str.encode):
    """The body with every input as Triton binary tensor data (BYTES elements through `encode`)."""
    chunks = []
    for tensor in body["inputs"]:
        values = tensor.pop("data")
        if tensor["datatype"] == "BYTES":
            raw = b"".join(len(v).to_bytes(4, "little") + v for v in map(encode, values))
        else:
            raw = np.asarray(values, dtype="<i8" if tensor["datatype"] == "INT64" else "<f8").tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        chunks.append(raw)
    header = orjson.dumps(body)
    return client.post(INFER, content=header + b"".join(chunks), headers={
        "content-type": "application/octet-stream", "inference-header-content-length": str(len(header))})


def test_binary_tensor_extension_in_and_out(client, frame, expected):
    response = post_binary(client, v2_request(frame, parameters={"binary_data_output": True}))
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
    logged = len(read_log(log_path))
    missing = error_of(client.post(INFER, json=v2_request(frame, outputs=[{"name": "predict"}])), 400)
    assert "'predict' do not exist" in missing
    assert len(read_log(log_path)) == logged  # refused before the model ran: nothing logged
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
    assert client.get("/v2/").json() == meta  # the protocol's OpenAPI document writes it with the slash
    assert meta["name"] == "purchase_serving" and "binary_tensor_data" in meta["extensions"]
    model = client.get("/v2/models/purchase_lr").json()
    version = load_model("purchase_lr:latest").version
    assert model["versions"] == [version] and model["platform"] == "sklearn"
    assert [(i["name"], i["datatype"], i["shape"]) for i in model["inputs"]] == [
        (c, DATATYPES[c], [-1, 1]) for c in PURCHASE.columns
    ]
    assert [(o["name"], o["datatype"]) for o in model["outputs"]] == [
        ("predict_proba", "FP64"), ("predicted_class", "INT64"), ("prediction_id", "BYTES")]
    assert client.get(f"/v2/models/purchase_lr/versions/{version}").json() == model
    assert client.get(f"/v2/models/purchase_lr/versions/{version}/ready").status_code == 200
    assert client.get("/v2/models/purchase_lr/ready").json() == {"name": "purchase_lr", "ready": True}
    assert "'nope' is not served" in error_of(client.get("/v2/models/nope"), 404)
    assert "Version 'v0'" in error_of(client.get("/v2/models/purchase_lr/versions/v0/ready"), 404)
    assert "Version 'v0'" in error_of(client.post("/v2/models/purchase_lr/versions/v0/infer", json={}), 404)
    assert "not loaded" in error_of(client.get("/v2/models/ghost_model/ready"), 503)
    assert "not loaded" in error_of(client.post("/v2/models/ghost_model/infer", json={}), 503)
    assert "not loaded" in error_of(client.get("/v2/models/ghost_model"), 503)


# --- BYTES content types: base64 (MLServer's Base64Codec), str, pd_json --------------------------------------------

def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _country(body: dict, values: list, parameters: dict | None = None) -> dict:
    changed = _break(body, "student_country", data=values)
    if parameters is not None:
        changed["inputs"][0]["parameters"] = parameters
    return changed


def test_base64_bytes_are_decoded_on_the_input_or_the_request(client, frame, expected):
    encoded = [_b64(c) for c in frame["student_country"]]
    on_input = _country(v2_request(frame), encoded, {"content_type": "base64"})
    np.testing.assert_allclose(outputs(client.post(INFER, json=on_input))["predict_proba"]["data"], expected, atol=1e-12)
    on_request = _country(v2_request(frame, parameters={"content_type": "base64"}), encoded)
    np.testing.assert_allclose(outputs(client.post(INFER, json=on_request))["predict_proba"]["data"], expected, atol=1e-12)
    # the input's own content type wins over the request's
    literal = _country(v2_request(frame, parameters={"content_type": "base64"}), frame["student_country"].tolist(),
                       {"content_type": "str"})
    np.testing.assert_allclose(outputs(client.post(INFER, json=literal))["predict_proba"]["data"], expected, atol=1e-12)
    as_json = _country(v2_request(frame), [f'"{c}"' for c in frame["student_country"]], {"content_type": "pd_json"})
    np.testing.assert_allclose(outputs(client.post(INFER, json=as_json))["predict_proba"]["data"], expected, atol=1e-12)


def test_base64_over_binary_tensors(client, frame, expected):
    response = post_binary(client, v2_request(frame, parameters={"content_type": "base64"}),
                           encode=lambda text: _b64(text).encode())
    np.testing.assert_allclose(outputs(response)["predict_proba"]["data"], expected, atol=1e-12)


@pytest.mark.parametrize(
    "values, parameters, needles",
    [
        (["SW5kaWE"], {"content_type": "base64"}, ["'student_country'", "row 3", "not valid base64", "padding"]),
        (["India!"], {"content_type": "base64"}, ["'student_country'", "row 3", "not valid base64"]),
        (["Côte"], {"content_type": "base64"}, ["'student_country'", "row 3", "not valid base64"]),
        ([base64.b64encode(b"\xff\xfe").decode()], {"content_type": "base64"}, ["'student_country'", "row 3", "not UTF-8"]),
        (["India"], {"content_type": "pd_json"}, ["'student_country'", "row 3", "not JSON"]),
        (["12"], {"content_type": "pd_json"}, ["'student_country'", "row 3", "int", "not a string"]),
        (["India"], {"content_type": "hex"}, ["input 'student_country' (BYTES)", "'hex' is not supported", "base64"]),
        (["India"], {"content_type": 1}, ["input 'student_country' (BYTES)", "content_type"]),
    ],
)
def test_undecodable_bytes_are_400_naming_input_and_row(client, frame, values, parameters, needles):
    encoded = [_b64(c) for c in frame["student_country"]] if parameters["content_type"] == "base64" else (
        [f'"{c}"' for c in frame["student_country"]])
    encoded[3:4] = values
    message = error_of(client.post(INFER, json=_country(v2_request(frame), encoded, parameters)), 400)
    for needle in needles:
        assert needle in message, message


def test_content_types_that_do_not_fit_are_refused(client, frame):
    numeric = _break(v2_request(frame), "days_on_platform", parameters={"content_type": "base64"})
    assert "input 'days_on_platform' (INT64) parameter 'content_type' 'base64'" in error_of(client.post(INFER, json=numeric), 400)
    assert outputs(client.post(INFER, json=_break(v2_request(frame), "days_on_platform", parameters={"content_type": "np"})))
    unknown = v2_request(frame, parameters={"content_type": "hf"})
    assert "request parameter 'content_type' 'hf' is not supported" in error_of(client.post(INFER, json=unknown), 400)


def test_base64_text_without_the_parameter_is_a_category_value(client, frame):
    """Without content_type base64, "SW5kaWE=" is a country name the model has not seen: scored as an unknown
    category, like any other new country (a 200 is right: guessing that text is base64 would break real values)."""
    body = _country(v2_request(frame.head(1)), [_b64("India")])
    unseen = _country(v2_request(frame.head(1)), ["Atlantis"])
    seen = _country(v2_request(frame.head(1)), ["India"])
    proba = [outputs(client.post(INFER, json=b))["predict_proba"]["data"][0] for b in (body, unseen, seen)]
    assert proba[0] == proba[1] != proba[2]


# --- parameters: booleans, scalars in the answer, prediction ids ---------------------------------------------------

@pytest.mark.parametrize(
    "where, value",
    [("request", "false"), ("request", "true"), ("request", 0), ("request", 1), ("output", "false"), ("output", 1)],
)
def test_boolean_parameters_must_be_json_booleans(client, frame, where, value):
    if where == "request":
        body = v2_request(frame, parameters={"binary_data_output": value})
        needle = "request parameter 'binary_data_output' must be true or false"
    else:
        body = v2_request(frame, outputs=[{"name": "predict_proba", "parameters": {"binary_data": value}}])
        needle = "output 'predict_proba' parameter 'binary_data' must be true or false"
    message = error_of(client.post(INFER, json=body), 400)
    assert needle in message and repr(value) in message


def test_boolean_parameters_choose_json_or_binary(client, frame, expected):
    json_out = client.post(INFER, json=v2_request(frame, parameters={"binary_data_output": False}))
    assert json_out.headers["content-type"] == "application/json"
    np.testing.assert_allclose(outputs(json_out)["predict_proba"]["data"], expected, atol=1e-12)
    mixed = client.post(INFER, json=v2_request(frame, parameters={"binary_data_output": True}, outputs=[
        {"name": "predicted_class", "parameters": {"binary_data": False}}, {"name": "predict_proba"}]))
    length = int(mixed.headers["inference-header-content-length"])
    header = orjson.loads(mixed.content[:length])
    cls, proba = header["outputs"]
    assert cls["data"] == (expected >= 0.5).astype(int).tolist() and "data" not in proba
    np.testing.assert_allclose(np.frombuffer(mixed.content[length:], dtype="<f8"), expected, atol=1e-12)


def _scalars_only(parameters: dict | None) -> bool:
    return all(type(v) in (str, int, float, bool) for v in (parameters or {}).values())


def test_answer_parameters_are_scalars_and_prediction_ids_an_output(client, frame):
    log_path = client.app.dependency_overrides[v2.current_predictor]().settings.prediction_log_path
    for body in (v2_request(frame), v2_request(frame, parameters={"content_type": "pd", "binary_data_output": False})):
        answer = client.post(INFER, json=body).json()
        assert _scalars_only(answer.get("parameters")) and all(_scalars_only(o.get("parameters")) for o in answer["outputs"])
        ids = outputs_of(answer)["prediction_id"]
        assert ids["datatype"] == "BYTES" and ids["shape"] == [20, 1] and len(set(ids["data"])) == 20
        logged = {r["prediction_id"] for r in iter_records(log_path)}
        assert set(ids["data"]) <= logged
    assert outputs_of(client.post(INFER, json=v2_request(frame)).json())["prediction_id"]  # by default: every output
    only = client.post(INFER, json=v2_request(frame, outputs=[{"name": "predict_proba"}])).json()
    assert [o["name"] for o in only["outputs"]] == ["predict_proba"]  # asked for one: one


def test_prediction_ids_as_binary_bytes(client, frame):
    body = v2_request(frame, outputs=[{"name": "prediction_id", "parameters": {"binary_data": True}}])
    response = client.post(INFER, json=body)
    length = int(response.headers["inference-header-content-length"])
    [tensor] = orjson.loads(response.content[:length])["outputs"]
    raw, ids = response.content[length:], []
    assert tensor["parameters"] == {"binary_data_size": len(raw)}
    while raw:
        size = int.from_bytes(raw[:4], "little")
        ids.append(raw[4 : 4 + size].decode())
        raw = raw[4 + size :]
    assert len(ids) == 20 and all(len(i) == 36 for i in ids)


def outputs_of(answer: dict) -> dict[str, dict]:
    return {o["name"]: o for o in answer["outputs"]}


# --- 404 and 405 under /v2, in the protocol's shape ---------------------------------------------------------------

@pytest.mark.parametrize(
    "method, path, status, needle",
    [
        ("GET", "/v2/models/purchase_gbm/config", 404, "model configuration extension"),
        ("GET", "/v2/models/nope/config", 404, "'nope' is not served"),
        ("POST", "/v2/repository/index", 404, "No V2 route is POST /v2/repository/index"),
        ("GET", "/v2/whatever/else", 404, "No V2 route"),
        ("GET", INFER, 405, "GET is not allowed on /v2/models/purchase_gbm/infer; allowed: POST"),
        ("DELETE", "/v2/models/purchase_gbm", 405, "allowed: GET"),
        ("POST", "/v2/health/ready", 405, "allowed: GET"),
    ],
)
def test_unknown_routes_and_methods_answer_the_protocols_error(client, method, path, status, needle):
    response = client.request(method, path)
    assert needle in error_of(response, status)
    if status == 405:
        assert response.headers["allow"]


# --- Content-Encoding ---------------------------------------------------------------------------------------------

def test_gzip_and_deflate_bodies(client, frame, expected):
    raw = orjson.dumps(v2_request(frame))
    for coding, body in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw)), ("x-gzip", gzip.compress(raw)),
                         ("deflate", zlib.compress(raw)[2:-4]),  # a raw deflate stream, as some clients send
                         ("gzip", gzip.compress(raw[:100]) + gzip.compress(raw[100:])),  # two gzip members
                         ("deflate, gzip", gzip.compress(zlib.compress(raw)))):
        response = client.post(INFER, content=body, headers={"content-type": "application/json", "content-encoding": coding})
        np.testing.assert_allclose(outputs(response)["predict_proba"]["data"], expected, atol=1e-12)
    arrow_body = gzip.compress(to_arrow(frame))
    response = client.post(INFER, content=arrow_body, headers={"content-type": ARROW_STREAM, "content-encoding": "gzip"})
    np.testing.assert_allclose(outputs(response)["predict_proba"]["data"], expected, atol=1e-12)


def test_bad_encodings_are_refused(client, frame):
    raw = orjson.dumps(v2_request(frame))
    response = client.post(INFER, content=raw, headers={"content-type": "application/json", "content-encoding": "br"})
    assert "Content-Encoding 'br' is not supported" in error_of(response, 415)
    assert response.headers["accept-encoding"] == "gzip, deflate"
    truncated = client.post(INFER, content=gzip.compress(raw)[:-20], headers={"content-encoding": "gzip"})
    assert "truncated" in error_of(truncated, 400)
    corrupt = client.post(INFER, content=b"\x1f\x8b" + b"not gzip at all", headers={"content-encoding": "gzip"})
    assert "not valid gzip data" in error_of(corrupt, 400)
    plain = client.post(INFER, content=raw, headers={"content-encoding": "deflate"})
    assert "not valid deflate data" in error_of(plain, 400)


def test_a_zip_bomb_is_413_after_inflating_no_more_than_the_limit(client, monkeypatch):
    import serving.web.content_encoding as content_encoding

    produced = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def decompress(self, data, max_length=0):
            out = self.inner.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name):
            return getattr(self.inner, name)

    real = zlib.decompressobj
    monkeypatch.setattr(content_encoding.zlib, "decompressobj", lambda **kw: Spy(real(**kw)))
    packer = zlib.compressobj(9, wbits=31)
    bomb = b"".join(packer.compress(bytes(1 << 20)) for _ in range(50)) + packer.flush()  # 50 MiB of zeros
    assert len(bomb) < MAX_BODY_BYTES
    response = client.post(INFER, content=bomb, headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert "over the limit of 65536 bytes once decompressed" in error_of(response, 413)
    assert 0 < sum(produced) <= MAX_BODY_BYTES + 1
