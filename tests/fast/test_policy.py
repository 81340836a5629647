"""Every route's declared policy, held against the app's real route table, in process: no route without a policy,
every route x every token scope (versioned V2 paths and trailing slashes included), and one readiness answer."""

from __future__ import annotations

import re

import pytest

import service
from serving.core.registry import empty_entry
from serving.seam import served_routes
from serving.web.auth import Tokens
from serving.web.gate import Gate
from serving.web.policy import Doors, Scope
from settings import Settings
from tests.routes import EXPECTED, concrete, variants

TOKENS = {Scope.PREDICT: "tok-predict-1b2c", Scope.FEEDBACK: "tok-feedback-3d4e", Scope.ADMIN: "tok-admin-5f6a"}
REFUSED = (401, 403)


def routes(server) -> list:
    return list(served_routes(server.client.app, service.PurchaseService))


def test_every_route_of_the_real_table_has_a_declared_policy(server):
    table = routes(server)
    doors = Doors.of(server.client.app, service.PurchaseService)
    assert doors.undeclared == [], "declare a policy for these routes"
    assert {route.path for route in table} == set(EXPECTED), "a route was added or removed: list its scope in tests/routes.py"
    for route in table:
        door, _ = doors.match(route.path.replace("{path:path}", "x"), sorted(route.methods or ["GET"])[0])
        assert door.policy.scope is EXPECTED[route.path], route.path


def test_every_operation_in_the_openapi_document_has_its_own_id(server):
    document = server.get("/docs.json").json()
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values() if "operationId" in op]
    assert ids and sorted(i for i in set(ids) if ids.count(i) > 1) == []


def test_a_route_without_a_policy_is_refused_and_named(server, caplog):
    from starlette.routing import Route

    app = server.client.app
    app.router.routes.insert(0, Route("/undeclared", lambda request: None, methods=["GET"]))
    try:
        doors = Doors.of(app, service.PurchaseService)
        assert doors.undeclared == ["GET|HEAD /undeclared"]
        assert "routes without a declared policy" in caplog.text and "/undeclared" in caplog.text
        gate = live_gate(server)
        gate.doors, before = doors, gate.doors
        try:
            response = server.get("/undeclared")
            assert response.status_code == 500 and response.json() == {
                "detail": "Prediction failed; the error is in the server log."}
        finally:
            gate.doors = before
    finally:
        del app.router.routes[0]


def live_gate(server) -> Gate:
    node = server.client.app.middleware_stack
    while not isinstance(node, Gate):
        node = node.app
    return node


@pytest.fixture
def tokens(server):
    """The live gate with tokens of every scope configured (as if API_TOKENS, FEEDBACK_TOKENS and ADMIN_TOKEN were
    set), for one test."""
    gate = live_gate(server)
    before = gate.tokens

    def configure(**settings) -> None:
        gate.tokens = Tokens(Settings(**settings))

    yield configure
    gate.tokens = before


def requests(server):
    version = server.get("/v1/models").json()["models"][0]["version"]
    for route in routes(server):
        method = sorted(route.methods or ["GET"])[0]
        method = "GET" if method == "HEAD" else method
        for variant in variants(concrete(route.path, version)):
            yield route.path, method, variant


def send(server, method: str, path: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "POST":
        return server.client.post(path, content=b"{}", headers={**headers, "Content-Type": "application/json"})
    return server.client.request(method, path, headers=headers)


def test_every_route_against_every_token_scope(server, tokens):
    tokens(api_tokens=TOKENS[Scope.PREDICT], feedback_tokens=TOKENS[Scope.FEEDBACK], admin_token=TOKENS[Scope.ADMIN])
    checked = 0
    for template, method, path in requests(server):
        scope = EXPECTED[template]
        for given in (None, "wrong-token", *TOKENS.values()):
            response = send(server, method, path, given)
            where = f"{method} {path} with {given}: {response.status_code} {response.text[:120]}"
            if scope is Scope.PUBLIC or given == TOKENS.get(scope):
                assert response.status_code not in REFUSED, where
            elif given in TOKENS.values():
                assert response.status_code == 403, where
                assert response.headers["www-authenticate"].startswith("Bearer")
            else:
                assert response.status_code == 401, where
                assert response.headers["www-authenticate"].startswith("Bearer")
            if response.status_code in REFUSED:
                key = "error" if template.startswith("/v2") else "detail"
                assert set(response.json()) == {key}, where
                assert not any(token in response.text for token in TOKENS.values()), where
            checked += 1
    assert checked >= len(EXPECTED) * 2 * 5
    metrics = server.get("/metrics").text
    assert not any(token in metrics for token in TOKENS.values())


@pytest.mark.parametrize(("settings", "open_scopes", "off"), [
    ({}, {Scope.PUBLIC, Scope.PREDICT, Scope.FEEDBACK}, True),
    ({"api_tokens": "tok-predict-1b2c"}, {Scope.PUBLIC}, True),  # feedback takes the API tokens
    ({"admin_token": "tok-admin-5f6a"}, {Scope.PUBLIC, Scope.PREDICT}, False),  # feedback closed, never open
])
def test_which_scopes_are_open_as_configured(server, tokens, settings, open_scopes, off):
    tokens(**settings)
    for template, method, path in requests(server):
        scope = EXPECTED[template]
        status = send(server, method, path, None).status_code
        if scope is Scope.ADMIN and off:
            assert status == 404, (path, status)
        elif scope in open_scopes:
            assert status not in REFUSED, (path, status)
        else:
            assert status == 401, (path, status)
    if "api_tokens" in settings:
        assert send(server, "POST", "/v1/feedback", TOKENS[Scope.PREDICT]).status_code == 422  # admitted, then 422
    if "admin_token" in settings:
        assert send(server, "POST", "/v1/feedback", TOKENS[Scope.ADMIN]).status_code == 403


def test_trailing_slash_is_the_route_itself(server, tokens):
    from tests.test_service import SEED_RECORDS

    tokens(api_tokens=TOKENS[Scope.PREDICT])
    auth = {"Authorization": f"Bearer {TOKENS[Scope.PREDICT]}"}
    answer = server.post("/predict/", SEED_RECORDS[0], headers=auth)
    assert answer.status_code == 200 and answer.json()["predicted_purchase"] in (0, 1)
    version = answer.json()["model_version"]
    body = {"inputs": [{"name": "days_on_platform", "shape": [1], "datatype": "INT64", "data": [1]}]}
    for path in ("/v2/models/purchase_gbm/infer/", f"/v2/models/purchase_gbm/versions/{version}/infer/"):
        assert server.post(path, body).status_code == 401
        assert server.post(path, body, headers=auth).status_code == 400  # admitted: the body lacks inputs


# --- one readiness answer ---------------------------------------------------------------------------------------

@pytest.fixture
def predictor(server):
    import bentoml

    return bentoml.get_current_service().predictor


def readiness(server) -> tuple[int, int]:
    return server.get("/readyz").status_code, server.get("/v2/health/ready").status_code


def test_readyz_and_v2_ready_give_one_answer(server, predictor, monkeypatch):
    assert readiness(server) == (200, 200)
    entries = predictor.registry.entries
    candidate = next(e for e in entries if e.requested == "purchase@candidate")
    # An alias whose stage is empty is a state of the store: still ready (it was 503 on /v2/health/ready).
    monkeypatch.setattr(predictor.registry, "entries",
                        [empty_entry(e.requested, "stage emptied") if e is candidate else e for e in entries])
    assert readiness(server) == (200, 200)
    # The purchase routes' own model is gone: not ready on both.
    monkeypatch.setattr(predictor.registry, "entries",
                        [empty_entry(e.requested, "stage emptied") if e.requested == "purchase@production" else e
                         for e in entries])
    assert readiness(server) == (503, 503)
    assert "DEFAULT_PURCHASE_MODEL=purchase@production" in server.get("/v2/health/ready").json()["error"]


def test_an_unserved_ab_arm_leaves_the_split_with_a_warning_and_a_metric(server, predictor, monkeypatch, caplog):
    from serving.core.routing import ABRouter
    from tests.test_service import SEED_RECORDS

    router = ABRouter({"purchase_gbm": 0.5, "purchase_lx": 0.5}, "purchase@production")
    monkeypatch.setattr(predictor, "router", router)
    router.follow(predictor._why_not_served)
    assert "A/B arm purchase_lx is not served" in caplog.text and "taken out of AB_WEIGHTS" in caplog.text
    statuses = {server.post("/predict", SEED_RECORDS[0], headers={"X-Routing-Key": f"user-{i}"}).status_code
                for i in range(40)}
    assert statuses == {200}
    metrics = server.get("/metrics").text
    assert re.search(r'serving_ab_arm_weight\{arm="purchase_lx"\} 0\.0', metrics)
    assert re.search(r'serving_ab_arm_weight\{arm="purchase_gbm"\} 1\.0', metrics)
    assert readiness(server) == (200, 200)
