"""The V2 protocol and Arrow bodies against a real `bentoml serve`, with real clients: tritonclient, an
MLServer-style request, and serving/client.py. Predictions must equal the service's own /batch_predict answers."""

from __future__ import annotations

import base64
import gzip
import re
import uuid
import zlib
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from monitoring.predictlog import iter_records
from serving.client import PredictionRejected, from_arrow, predict_arrow, to_arrow
from training.data import generate_purchase
from training.schema import PURCHASE

ARROW = "application/vnd.apache.arrow.stream"
DATATYPES = {"student_country": "BYTES", "days_on_platform": "INT64", "minutes_watched": "FP64",
             "courses_started": "INT64", "practice_exams_started": "INT64", "practice_exams_passed": "INT64",
             "minutes_spent_on_exams": "FP64"}  # fmt: skip
NUMPY = {"BYTES": object, "INT64": np.int64, "FP64": np.float64}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_purchase(300, seed=11).drop(columns="purchased")[PURCHASE.columns]


@pytest.fixture(scope="module")
def batch_answer(server, frame) -> pd.DataFrame:
    """The service's own JSON /batch_predict answer for the same rows: what every other door must match."""
    response = server.post("/batch_predict", {"records": frame.to_dict("records")})
    assert response.status_code == 200, response.text
    return pd.DataFrame(response.json()["predictions"])


@pytest.fixture(scope="module")
def triton_client(server):
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), connection_timeout=60, network_timeout=60)
    yield client
    client.close()


def triton_inputs(frame: pd.DataFrame, binary: bool = True) -> list:
    inputs = []
    for column in frame.columns:
        datatype = DATATYPES[column]
        values = frame[[column]].to_numpy().astype(NUMPY[datatype])  # [rows, 1]
        tensor = triton.InferInput(column, list(values.shape), datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_tritonclient_health_and_metadata(triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready("purchase_gbm")
    assert not triton_client.is_model_ready("no_such_model")
    meta = triton_client.get_model_metadata("purchase_gbm")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == list(DATATYPES.items())
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "predict_proba": "FP64", "predicted_class": "INT64", "prediction_id": "BYTES"}
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
def test_tritonclient_infer_equals_batch_predict(triton_client, frame, batch_answer, binary):
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("predict_proba", "predicted_class")]
    result = triton_client.infer("purchase_gbm", triton_inputs(frame, binary), outputs=outputs, request_id="t-1")
    proba, classes = result.as_numpy("predict_proba"), result.as_numpy("predicted_class")
    assert proba.shape == (len(frame), 1) and classes.dtype == np.int64
    np.testing.assert_allclose(proba.ravel(), batch_answer["predicted_purchase_probability"], rtol=0, atol=1e-12)
    assert classes.ravel().tolist() == batch_answer["predicted_purchase"].tolist()
    response = result.get_response()
    assert response["model_name"] == "purchase_gbm" and response["id"] == "t-1"


def test_tritonclient_sees_protocol_errors(triton_client, frame):
    bad = frame.copy()
    bad.loc[7, "minutes_watched"] = -1.0
    with pytest.raises(InferenceServerException) as caught:
        triton_client.infer("purchase_gbm", triton_inputs(bad))
    assert caught.value.status() == "400"
    assert "input 'minutes_watched' must be >= 0 (offending rows, 0-based: 7)" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        triton_client.infer("no_such_model", triton_inputs(frame))
    assert caught.value.status() == "404"


def test_mlserver_style_pandas_request(server, frame, batch_answer):
    """The body MLServer's pandas codec builds (`parameters.content_type: "pd"`, one [rows, 1] tensor per column),
    as the bench sends it to both servers."""
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": c, "datatype": DATATYPES[c], "shape": [len(frame), 1], "data": frame[c].tolist(),
             **({"parameters": {"content_type": "str"}} if DATATYPES[c] == "BYTES" else {})}
            for c in frame.columns
        ],
    }
    response = server.post("/v2/models/purchase_gbm/infer", body)
    assert response.status_code == 200, response.text
    out = {o["name"]: o for o in response.json()["outputs"]}
    np.testing.assert_allclose(out["predict_proba"]["data"], batch_answer["predicted_purchase_probability"], atol=1e-12)


def test_arrow_round_trips_through_the_client(server, frame, batch_answer):
    answer = predict_arrow(server.url, frame)
    assert list(answer.columns) == ["predicted_purchase_probability", "predicted_purchase", "prediction_id"]
    assert answer.attrs["model_name"] == "purchase_gbm"
    np.testing.assert_allclose(answer["predicted_purchase_probability"], batch_answer["predicted_purchase_probability"],
                               rtol=0, atol=1e-12)
    assert answer["predicted_purchase"].tolist() == batch_answer["predicted_purchase"].tolist()
    v2_answer = predict_arrow(server.url, frame, model="purchase_gbm")
    np.testing.assert_allclose(v2_answer["predict_proba"], batch_answer["predicted_purchase_probability"], atol=1e-12)
    # JSON in, Arrow out
    response = server.post("/batch_predict", {"records": frame.to_dict("records")}, headers={"accept": ARROW})
    assert response.headers["content-type"] == ARROW
    assert from_arrow(response.content)["predicted_purchase"].tolist() == batch_answer["predicted_purchase"].tolist()


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda f: f.astype({"days_on_platform": str}), "column 'days_on_platform' must hold integers, got string"),
        (lambda f: f.drop(columns="minutes_watched"), "column 'minutes_watched' is missing"),
        (lambda f: f.assign(days_on_platform=f["days_on_platform"] + 0.5), "'days_on_platform' must be an integer"),
        # pandas' NaN is "missing": pyarrow sends it as a null
        (lambda f: f.assign(minutes_watched=np.where(f.index == 4, np.nan, f["minutes_watched"])), "missing (null) (offending rows, 0-based: 4)"),
        (lambda f: f.assign(minutes_watched=np.where(f.index == 5, np.inf, f["minutes_watched"])), "NaN or infinite (offending rows, 0-based: 5)"),
        (lambda f: f.assign(practice_exams_passed=f["practice_exams_started"] + 1),
         "practice_exams_passed cannot exceed practice_exams_started (offending rows, 0-based: 0, 1, 2"),
    ],
)
def test_arrow_errors_are_422_naming_column_and_rows(server, frame, change, needle):
    with pytest.raises(PredictionRejected) as caught:
        predict_arrow(server.url, change(frame.head(30).copy()))
    assert caught.value.status == 422 and needle in caught.value.message, caught.value.message
    with pytest.raises(PredictionRejected) as caught:  # the same problem on V2 is a 400
        predict_arrow(server.url, change(frame.head(30).copy()), model="purchase_gbm")
    assert caught.value.status == 400 and needle.replace("column '", "input '") in caught.value.message


def test_arrow_limits_and_bodies(server):
    too_many = generate_purchase(10_001, seed=5).drop(columns="purchased")  # MAX_RECORDS defaults to 10,000
    response = httpx.post(server.url + "/batch_predict", content=to_arrow(too_many), headers={"content-type": ARROW})
    assert response.status_code == 422 and "over the limit of 10000 (MAX_RECORDS)" in response.json()["detail"]
    response = httpx.post(server.url + "/batch_predict", content=b"not arrow", headers={"content-type": ARROW})
    assert response.status_code == 422 and "not an Arrow IPC stream" in response.json()["detail"]
    response = httpx.post(server.url + "/v1/predict", content=b"x", headers={"content-type": ARROW})
    assert response.status_code == 415  # only /batch_predict and V2 take Arrow


def test_v2_requests_are_logged_and_counted(server, triton_client, frame):
    request_id = uuid.uuid4().hex
    triton_client.infer("purchase_lr", triton_inputs(frame.head(12)), headers={"x-request-id": request_id})
    lines = [r for r in iter_records(server.log_path) if r["request_id"] == request_id]
    assert len(lines) == 12
    assert {(r["endpoint"], r["model_name"], r["request_id"]) for r in lines} == {("/v2/infer", "purchase_lr", request_id)}
    assert [r["days_on_platform"] for r in lines] == frame.head(12)["days_on_platform"].tolist()
    body_id = uuid.uuid4().hex  # without the header, the protocol's own request id names the lines
    triton_client.infer("purchase_lr", triton_inputs(frame.head(3)), request_id=body_id)
    assert sum(r["request_id"] == body_id for r in iter_records(server.log_path)) == 3
    bad = {"inputs": [{"name": "days_on_platform", "datatype": "INT64", "shape": [1, 1], "data": [True]}]}
    assert server.post("/v2/models/purchase_lr/infer", bad).status_code == 400
    text = server.get("/metrics").text
    predicted = re.findall(r'serving_predictions_total\{[^}]*endpoint="/v2/infer"[^}]*model="purchase_lr"[^}]*\} (\S+)'
                           r'|serving_predictions_total\{[^}]*model="purchase_lr"[^}]*endpoint="/v2/infer"[^}]*\} (\S+)', text)
    assert sum(float(a or b) for a, b in predicted) >= 12
    assert re.search(r'serving_validation_failures_total\{endpoint="/v2/infer",reason="datatype"\} [1-9]', text)
    assert 'serving_batch_rows_count{endpoint="/v2/infer"}' in text


def test_docs_document_the_v2_routes_and_arrow(server):
    spec = server.get("/docs.json").json()
    paths = spec["paths"]
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
                 "/v2/models/{name}/versions/{version}", "/v2/models/{name}/infer",
                 "/v2/models/{name}/versions/{version}/infer"):
        assert path in paths, path
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", ARROW}
    assert infer["requestBody"]["content"]["application/json"]["schema"]["properties"]["inputs"]["minItems"] == 1
    assert {"400", "404", "413", "415", "503"} <= set(infer["responses"])
    assert ARROW in paths["/batch_predict"]["post"]["requestBody"]["content"]


# --- what issue 20 found: compression, base64, parameters, 404/405, prediction ids -------------------------------

@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(triton_client, frame, batch_answer, binary, compression):
    """tritonclient's request_compression_algorithm sends Content-Encoding gzip or deflate (its zlib format); it
    asks for a compressed answer too, which this server does not send: the client reads it as is."""
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("predict_proba", "prediction_id")]
    result = triton_client.infer("purchase_gbm", triton_inputs(frame, binary), outputs=outputs,
                                 request_compression_algorithm=compression, response_compression_algorithm=compression)
    np.testing.assert_allclose(result.as_numpy("predict_proba").ravel(), batch_answer["predicted_purchase_probability"],
                               rtol=0, atol=1e-12)
    ids = [i.decode() if isinstance(i, bytes) else i for i in result.as_numpy("prediction_id").ravel()]
    assert len(set(ids)) == len(frame) and all(len(i) == 36 for i in ids)
    assert "parameters" not in result.get_response() or all(
        type(v) in (str, int, float, bool) for v in result.get_response()["parameters"].values())


def test_tritonclient_base64_bytes_on_the_request(triton_client, frame, batch_answer):
    """A request-level content_type base64 (tritonclient's `parameters`) makes every BYTES input base64."""
    inputs = triton_inputs(frame)
    encoded = np.array([[base64.b64encode(c.encode())] for c in frame["student_country"]], dtype=object)
    inputs[0].set_data_from_numpy(encoded, binary_data=True)
    result = triton_client.infer("purchase_gbm", inputs, parameters={"content_type": "base64"})
    np.testing.assert_allclose(result.as_numpy("predict_proba").ravel(), batch_answer["predicted_purchase_probability"],
                               rtol=0, atol=1e-12)
    encoded[5, 0] = b"SW5kaWE"  # base64 of "India" without its padding
    inputs[0].set_data_from_numpy(encoded, binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        triton_client.infer("purchase_gbm", inputs, parameters={"content_type": "base64"})
    assert caught.value.status() == "400"
    assert "input 'student_country': row 5 is not valid base64" in caught.value.message()


def test_tritonclient_model_config_and_unknown_routes_get_the_servers_message(server, triton_client):
    with pytest.raises(InferenceServerException) as caught:
        triton_client.get_model_config("purchase_gbm")
    assert caught.value.status() == "404" and "model configuration extension" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        triton_client.get_model_repository_index()
    assert caught.value.status() == "404" and "No V2 route is POST /v2/repository/index" in caught.value.message()
    response = httpx.get(server.url + "/v2/models/purchase_gbm/infer")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json() == {"error": "GET is not allowed on /v2/models/purchase_gbm/infer; allowed: POST."}


def test_string_booleans_are_refused(server, frame):
    body = {"parameters": {"binary_data_output": "false"}, "inputs": [
        {"name": c, "datatype": DATATYPES[c], "shape": [3, 1], "data": frame[c].head(3).tolist()} for c in frame.columns]}
    response = server.post("/v2/models/purchase_gbm/infer", body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("request parameter 'binary_data_output' must be true or false")


def _peak_rss(pid: int) -> int:
    """VmHWM: the most memory the process ever had resident, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_real_zip_bomb_is_413_without_inflating(server):
    """1 GiB of zeros in about 1 MB of gzip: refused once MAX_BODY_BYTES (32 MiB) is inflated, not after 1 GiB."""
    packer = zlib.compressobj(9, wbits=31)
    bomb = b"".join(packer.compress(bytes(1 << 20)) for _ in range(1024)) + packer.flush()
    assert len(bomb) < 2 << 20
    workers = [c for c in psutil.Process(server.process.pid).children(recursive=True)
               if "_bentoml_impl.worker.service" in " ".join(c.cmdline())]
    before = {w.pid: _peak_rss(w.pid) for w in workers}
    for path in ("/batch_predict", "/v2/models/purchase_gbm/infer"):
        response = httpx.post(server.url + path, content=bomb, timeout=60,
                              headers={"content-type": "application/json", "content-encoding": "gzip"})
        assert response.status_code == 413, response.text[:300]
        assert "over the limit of 33554432 bytes once decompressed" in response.text
    grown = max(_peak_rss(pid) - peak for pid, peak in before.items())
    assert grown < 256 << 20, f"a worker's peak memory grew by {grown >> 20} MiB"
    response = httpx.post(server.url + "/batch_predict", content=gzip.compress(b'{"records": []}'), headers={
        "content-type": "application/json", "content-encoding": "gzip"})
    assert response.status_code == 422  # decoded, then validated as usual
    response = httpx.post(server.url + "/batch_predict", content=b"{}", headers={"content-encoding": "compress"})
    assert response.status_code == 415 and response.headers["accept-encoding"] == "gzip, deflate"
