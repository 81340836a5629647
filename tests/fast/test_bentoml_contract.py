"""The behaviours of BentoML and prometheus_client that serving/seam.py relies on, checked against the installed
libraries (a toy service served in process, real histograms, the real model store), never against their source
text: an upgrade that changes one fails here, by name. Real-process parts are checked where a process is the point:
the metrics folder of a start (tests/test_startup.py) and BentoML's client (tests/test_service.py)."""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np
import orjson
import pytest
from prometheus_client import Histogram
from starlette.responses import Response
from starlette.testclient import TestClient

from serving.seam import ADMITTED, AdmittedInput, BatchedInput, BatchedOutput, observe_many, served_routes, signature_once


def test_bentoml_is_the_pinned_version():
    assert bentoml.__version__ == "1.4.39", "re-check every contract in this file, then update the pin"


class EchoInput(AdmittedInput):
    value: int = 0


class ItemInput(BatchedInput):
    value: int = 0


class Answered:
    def __init__(self, admitted: dict):
        self.admitted = admitted

    def response(self) -> Response:
        return Response(orjson.dumps({"mine": self.admitted}), media_type="application/json")


class ItemOutput(BatchedOutput):
    value: int = 0


class Stamp:
    """Stands in for the gate: it admits every request by writing the scope key the input specs read."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            scope[ADMITTED] = {"path": scope["path"], "client_header": dict(scope["headers"]).get(b"x-n", b"").decode()}
        await self.app(scope, receive, send)


@bentoml.service(name="contract_toy")
class Toy:
    @bentoml.api(route="/echo", input_spec=EchoInput)
    @signature_once
    async def echo(self, admitted: dict) -> dict:  # a Response is returned: sent as it is
        return Response(orjson.dumps(admitted), status_code=201, media_type="application/json", headers={"x-mine": "1"})

    @bentoml.api(route="/item", batchable=True, max_batch_size=4, max_latency_ms=5000, input_spec=ItemInput,
                 output_spec=ItemOutput)
    @signature_once
    def item(self, admitted: list[dict]) -> list:
        return [Answered(a) for a in admitted]

    @bentoml.api(route="/boom", input_spec=EchoInput)
    @signature_once
    def boom(self, admitted: dict) -> dict:
        raise RuntimeError("secret internal detail")


Toy.add_asgi_middleware(Stamp)


@pytest.fixture(scope="module")
def toy(server):
    """The toy's app in process. BentoML's current service is a process global: the service tier's (`server`,
    started first) is put back after the toy's lifespan."""
    from _bentoml_impl.server.app import ServiceAppFactory
    from _bentoml_sdk.service import get_current_service, set_current_service

    previous = get_current_service()
    # Without BentoML's request metrics: their collectors are process-wide, and the service tier registers them.
    Toy.inject_config()
    app = ServiceAppFactory(Toy, is_main=True, enable_metrics=False)()
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client
    set_current_service(previous)


def test_the_admitted_input_is_the_apis_argument_and_the_body_is_not_parsed(toy):
    """1: `from_http_request` gives the API the scope's admitted object (root input); BentoML never parses the
    body (not JSON here). A Response the API returns is sent as it is (status, headers)."""
    _, client = toy
    response = client.post("/echo", content=b"not json at all", headers={"x-n": "7", "content-type": "text/plain"})
    assert response.status_code == 201 and response.headers["x-mine"] == "1"
    assert response.json() == {"path": "/echo", "client_header": "7"}


def test_schema_json_has_no_root_input_flag(toy):
    """2: /schema.json lists the input spec's fields without `root_input`, so BentoML's client sends keyword
    arguments as the body's fields (its real use: tests/test_service.py::test_bentoml_client_keyword_form)."""
    _, client = toy
    echo = next(r for r in client.get("/schema.json").json()["routes"] if r["route"] == "/echo")
    assert "root_input" not in echo["input"] and "value" in echo["input"]["properties"]


def test_each_caller_of_a_batchable_api_gets_its_own_item(toy):
    """3: a batchable API's caller receives the Response of its own slice's one item."""
    _, client = toy
    for n in ("1", "2", "3"):
        response = client.post("/item", content=b"{}", headers={"x-n": n})
        assert response.status_code == 200 and response.json() == {"mine": {"path": "/item", "client_header": n}}


def test_an_exception_in_an_api_is_a_500_without_the_detail(toy):
    """The gate turns BentoML's 500 into the route's documented 500: BentoML must answer 500, never the error."""
    _, client = toy
    response = client.post("/boom", content=b"{}")
    assert response.status_code == 500 and "secret" not in response.text


def test_the_batchers_overload_is_a_503():
    """The gate rewrites a 503 from a batched route as 'overloaded': BentoML's batcher raises ServiceUnavailable."""
    from bentoml.exceptions import ServiceUnavailable

    assert ServiceUnavailable.error_code.value == 503


def test_served_routes_walks_bentomls_routes_the_apis_and_the_mounted_app(toy, server):
    """6: the route table read from the app BentoML builds: its own routes, each API by its method, and (below,
    on the real service) the mounted FastAPI app's routes, included routers flattened."""
    app, _ = toy
    routes = {r.path: r for r in served_routes(app, Toy)}
    assert {"/echo", "/item", "/boom", "/livez", "/readyz", "/metrics", "/docs.json"} <= set(routes)
    assert routes["/echo"].endpoint is Toy.apis["echo"].func
    import service

    real = {r.path: r.endpoint for r in served_routes(server.client.app, service.PurchaseService)}
    from serving.web import v2

    assert real["/v2/models/{name}/versions/{version}/infer"] is v2.infer_version
    assert real["/predict"] is service.PurchaseService.apis["predict"].func


def test_openapi_document_is_the_services_own():
    """4: Service.openapi_spec calls generate_spec when asked, so the wrapped one describes the service."""
    import service

    spec = service.PurchaseService.openapi_spec
    assert "created with BentoML" not in spec.info.description
    responses = spec.paths["/v1/predict"].post["responses"]
    assert list(responses[500]["content"]) == ["text/plain"] and 401 in responses


@pytest.mark.parametrize("values", [np.array([]), np.array([0.0, 0.05, 0.051, 0.5, 1.0, 7.0]),
                                    np.random.default_rng(0).random(1000)])
def test_observe_many_counts_as_observe_does(values):
    """8: the bulk observe leaves a histogram exactly as one `observe` per value would."""
    buckets = (0.05, 0.1, 0.5, 1.0)
    one, many = (Histogram(name, "test", buckets=buckets, registry=None) for name in ("by_one", "by_many"))
    for value in values:
        one.observe(value)
    observe_many(many, values)

    def samples(histogram: Histogram) -> list:
        return [(s.name.split("_", 2)[-1], s.labels, s.value) for m in histogram.collect() for s in m.samples
                if not s.name.endswith("_created")]

    assert [(n, labels) for n, labels, _ in samples(many)] == [(n, labels) for n, labels, _ in samples(one)]
    assert [v for *_, v in samples(many)] == pytest.approx([v for *_, v in samples(one)])


def test_the_model_store_is_where_bentoml_saves_models(trained_store):
    """training/stages.py keeps the stage book in BentoML's model store folder, found from BENTOML_HOME."""
    from training.stages import store_dir

    assert Path(bentoml.models.get("purchase_gbm:latest").path).parent.parent == store_dir()
