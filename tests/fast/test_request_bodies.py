"""Request bodies at every door, in process: Content-Encoding (gzip, deflate, a zip bomb, unknown codings), numbers
pyarrow refuses, and the /v2 answers that the service's own mounting decides (BentoML mounts the V2 app passively,
so an unknown /v2 path never reaches it unless the V2 router takes it)."""

from __future__ import annotations

import gzip
import zlib

import httpx
import orjson
import pandas as pd
import pytest

from monitoring.predictlog import iter_records
from serving.codecs.arrow import ARROW_STREAM
from serving.client import from_arrow, to_arrow
from tests.test_service import SEED_RECORDS
from tests.test_v2_protocol import v2_request

V2_INFER = "/v2/models/purchase_gbm/infer"
DEFAULT_LIMIT = 32 * 1024 * 1024  # MAX_BODY_BYTES' default, which the fast tier runs with
CODINGS = {"gzip": gzip.compress, "deflate": zlib.compress}


def send(server, path: str, body: bytes, **headers: str) -> httpx.Response:
    """POST raw bytes with headers, to the in-process app or a real server alike."""
    headers = {k.replace("_", "-"): v for k, v in headers.items()}
    client = getattr(server, "client", None)
    if client is not None:
        return client.post(path, content=body, headers=headers)
    return httpx.post(server.url + path, content=body, headers=headers, timeout=60)


def _probabilities(path: str, response: httpx.Response) -> list[float]:
    assert response.status_code == 200, response.text[:500]
    if response.headers["content-type"] == ARROW_STREAM:
        return from_arrow(response.content)["predicted_purchase_probability"].tolist()
    body = response.json()
    if path == "/predict":
        return [body["predicted_purchase_probability"]]
    if path == "/batch_predict":
        return [p["predicted_purchase_probability"] for p in body["predictions"]]
    if path == "/v1/predict":
        return body["predictions"][0]["prediction"]
    return next(o["data"] for o in body["outputs"] if o["name"] == "predict_proba")


DOORS = [
    ("/predict", orjson.dumps(SEED_RECORDS[0]), "application/json"),
    ("/batch_predict", orjson.dumps({"records": SEED_RECORDS}), "application/json"),
    ("/batch_predict", to_arrow(pd.DataFrame(SEED_RECORDS)), ARROW_STREAM),
    ("/v1/predict", orjson.dumps({"inputs": SEED_RECORDS, "predictions": [{"model_name": "purchase_gbm"}]}),
     "application/json"),
    (V2_INFER, orjson.dumps(v2_request(pd.DataFrame(SEED_RECORDS))), "application/json"),
    (V2_INFER, to_arrow(pd.DataFrame(SEED_RECORDS)), ARROW_STREAM),
]
DOOR_IDS = ["predict", "batch_predict", "batch_predict-arrow", "v1_predict", "v2", "v2-arrow"]


@pytest.mark.parametrize(("path", "body", "media_type"), DOORS, ids=DOOR_IDS)
@pytest.mark.parametrize("coding", list(CODINGS))
def test_compressed_bodies_get_the_same_answer(server, path, body, media_type, coding):
    plain = _probabilities(path, send(server, path, body, content_type=media_type))
    compressed = send(server, path, CODINGS[coding](body), content_type=media_type, content_encoding=coding)
    assert _probabilities(path, compressed) == plain


def test_compressed_feedback_is_stored(server):
    ids = [p["prediction_id"] for p in server.post("/batch_predict", {"records": SEED_RECORDS}).json()["predictions"]]
    body = orjson.dumps({"outcomes": [{"prediction_id": i, "outcome": 1} for i in ids]})
    response = send(server, "/v1/feedback", gzip.compress(body), content_type="application/json", content_encoding="gzip")
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3


@pytest.mark.parametrize(("path", "body", "media_type"), DOORS + [("/v1/feedback", b"{}", "application/json")],
                         ids=DOOR_IDS + ["feedback"])
def test_unknown_coding_is_415_with_accept_encoding(server, path, body, media_type):
    response = send(server, path, body, content_type=media_type, content_encoding="br")
    assert response.status_code == 415, response.text
    assert response.headers["accept-encoding"] == "gzip, deflate"
    shape = "error" if path.startswith("/v2") else "detail"
    assert "Content-Encoding 'br' is not supported" in response.json()[shape]


def _bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9, wbits=31)
    chunk = bytes(1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(inflated >> 20)) + packer.flush()


@pytest.mark.parametrize("path", ["/batch_predict", "/predict", "/v1/predict", V2_INFER])
def test_zip_bomb_is_413(server, path):
    bomb = _bomb(DEFAULT_LIMIT + (8 << 20))  # 40 MiB of zeros in about 40 kB
    assert len(bomb) < 100_000
    response = send(server, path, bomb, content_type="application/json", content_encoding="gzip")
    assert response.status_code == 413, response.text[:300]
    assert "once decompressed" in response.text


# --- numbers pyarrow refuses (schemathesis' 500 on /batch_predict) -----------------------------------------------

@pytest.mark.parametrize(
    "changes",
    [  # (record, field, value, refused): a value mixed with others that made pyarrow refuse the whole column
        [(0, "minutes_watched", 4127027048665607680, True), (1, "minutes_watched", 1.7976931348623157e308, True)],
        [(0, "days_on_platform", 4127027048665607680, True), (2, "days_on_platform", 12.0, False)],
        [(1, "minutes_spent_on_exams", -(2**70), True), (2, "minutes_spent_on_exams", 0.5, False)],
        [(2, "courses_started", 2**64, True), (0, "courses_started", 1e308, True)],
    ],
    ids=["huge-int-among-floats", "huge-int-among-whole-floats", "beyond-int64-among-floats", "beyond-uint64"],
)
def test_numbers_pyarrow_refuses_are_422_naming_record_and_field(server, changes):
    records = [dict(r) for r in SEED_RECORDS]
    for position, field, value, _ in changes:
        records[position][field] = value
    response = server.post("/batch_predict", {"records": records})
    assert response.status_code == 422, response.text
    named = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert named == {("body", "records", position, field) for position, field, _, refused in changes if refused}
    v1 = server.post("/v1/predict", {"inputs": records, "predictions": [{"model_name": "purchase_gbm"}]}).json()
    [item] = v1["predictions"]
    assert item["status"] == "BadRequest" and f"inputs[{changes[0][0]}].{changes[0][1]}" in item["error_message"]


# --- /v2 answers decided by how the service mounts the V2 router ------------------------------------------------

@pytest.mark.parametrize(
    ("method", "path", "status", "needle"),
    [
        ("GET", "/v2/models/purchase_gbm/config", 404, "model configuration extension"),
        ("GET", "/v2/repository/index", 404, "No V2 route"),
        ("POST", "/v2/repository/index", 404, "No V2 route"),
        ("GET", V2_INFER, 405, "allowed: POST"),
        ("PUT", "/v2/health/live", 405, "allowed: GET"),
    ],
)
def test_v2_404_and_405_are_the_protocols_json(server, method, path, status, needle):
    response = server.client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert needle in response.json()["error"]
    assert server.get("/nope").status_code == 404  # outside /v2: BentoML's own answer, untouched


def test_v2_prediction_ids_reach_the_log(server):
    body = v2_request(pd.DataFrame(SEED_RECORDS), outputs=[{"name": "prediction_id"}])
    [ids] = server.post(V2_INFER, body).json()["outputs"]
    logged = {r["prediction_id"]: r for r in iter_records(server.log_path)}
    assert ids["datatype"] == "BYTES" and len(ids["data"]) == 3 and set(ids["data"]) <= set(logged)
    assert {logged[i]["endpoint"] for i in ids["data"]} == {"/v2/infer"}


def test_v2_inputs_with_extreme_numbers_are_400(server):
    body = v2_request(pd.DataFrame(SEED_RECORDS))
    for tensor in body["inputs"]:
        if tensor["name"] == "minutes_watched":
            tensor["data"] = [1.0, 4127027048665607680, 1.7976931348623157e308]
        if tensor["name"] == "days_on_platform":
            tensor["data"] = [1, 2, 2**63]
    response = server.post(V2_INFER, body)
    assert response.status_code == 400, response.text
    assert "input 'days_on_platform': row 2 (9223372036854775808) is out of the INT64 range" in response.json()["error"]
    body["inputs"][1]["data"] = [1, 2, 3]
    response = server.post(V2_INFER, body)
    assert response.status_code == 400, response.text
    assert "input 'minutes_watched' must be <= 1000000000.0 (offending rows, 0-based: 1, 2)" in response.json()["error"]
