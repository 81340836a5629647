"""Model lifecycle against the real CLIs and one real lserver: aliases, promotion with its audit trail, rollback, hot
swap under load, a corrupted version refused, shadow lines, and the admin and API tokens.

Each test module gets a private copy of the session's model store (hard-linked model files, its own stage book),
so promotions here never move the aliases the other tests' servers serve.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from bench.bench_lifecycle import Hammer, book_changed, private_store, switch_seconds
from bench.harness import Server
from monitoring.predictlog import iter_records, read_log
from serving.web.policy import Scope
from tests.conftest import run_cli
from tests.routes import EXPECTED, UNDOCUMENTED, concrete, variants
from training.schema import PURCHASE

ADMIN_TOKEN = "adm-7f3c9a1e5b2d4c68"
API_TOKEN = "api-52d1e8b7c4a9f036"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RECORD = {name: field.examples[0] for name, field in PURCHASE.record.model_fields.items()}
REFRESH = 1.0


class Store:
    """A private model store and the CLIs run against it."""

    def __init__(self, home: Path):
        self.home = home
        self.env = {"BENTOML_HOME": str(home)}

    def promote(self, *args: str, check: bool = True):
        return run_cli("-m", "training.promote", *args, env=self.env, check=check)

    def book(self) -> dict:
        return orjson.loads((self.home / "models" / ".lifecycle-stages.json").read_bytes())

    def versions(self, name: str) -> list[str]:
        return sorted(p.name for p in (self.home / "models" / name).iterdir() if p.is_dir())

    def copy_version(self, name: str, new_version: str, *, corrupt: bool = False, schema_change: bool = False) -> str:
        """A new version of `name` (copied files, own metadata): its pipeline garbage, or its input schema changed."""
        latest = (self.home / "models" / name / "latest").read_text().strip()
        source_dir = self.home / "models" / name / latest
        target = self.home / "models" / name / new_version
        shutil.copytree(source_dir, target)  # real copies: the session store's files stay untouched
        info = yaml.safe_load((target / "model.yaml").read_text())
        info["version"] = new_version
        if schema_change:
            info["metadata"]["input_schema"]["columns"] = [*info["metadata"]["input_schema"]["columns"], "extra"]
        (target / "model.yaml").write_text(yaml.safe_dump(info))
        if corrupt:
            (target / "model.joblib").write_bytes(b"this is not a pickle")
        return f"{name}:{new_version}"


@pytest.fixture(scope="module")
def store(trained_store, bentoml_home, tmp_path_factory) -> Store:
    return Store(private_store(bentoml_home, tmp_path_factory.mktemp("lifecycle-store")))


# --- promotion, history, rollback (the CLI) ------------------------------------------------------------------------

def test_training_gives_the_default_stages_through_promotion(store):
    book = store.book()
    assert book["purchase"]["production"].startswith("purchase_gbm:")
    assert book["purchase"]["candidate"].startswith("purchase_lr:")
    assert book["drive_stats"]["production"].startswith("drive_stats_a:")
    history = store.promote("--history", "purchase").stdout
    assert "promote  purchase@production" in history and "trained" in history


def test_promotion_refusals_are_one_line_and_exit_2(store):
    wrong_schema = store.copy_version("purchase_lr", "schemachange1", schema_change=True)
    cases = {
        ("no_such_model", "--stage", "production"): "not in the model store",
        ("purchase_gbm:nosuchversion", "--stage", "production"): "not in the model store",
        ("drive_stats_a", "--stage", "production", "--task", "purchase"): "task 'drive_stats', not 'purchase'",
        (wrong_schema, "--stage", "production"): "--allow-schema-change",
        ("--rollback", "drive_stats", "--stage", "production"): "no earlier holder",
    }
    before = store.book()
    for args, reason in cases.items():
        result = store.promote(*args, check=False)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and reason in result.stderr, result.stderr
    assert store.book() == before, "a refused promotion must not move any stage"


def test_promote_history_and_rollback(store):
    book = store.book()["purchase"]
    gbm, lr = book["production"], book["candidate"]
    out = store.promote("purchase_lr", "--stage", "production", "--reason", "better recall").stdout
    assert f"purchase@production = {lr} (was {gbm}; {gbm} -> archived)" in out
    assert store.book()["purchase"] == {"production": lr}, "lr left candidate; gbm archived"
    store.promote("--rollback", "purchase", "--stage", "production")
    assert store.book()["purchase"] == {"production": gbm}
    store.promote(lr, "--stage", "candidate")  # back to the trained state for the lserver tests
    assert store.book()["purchase"] == {"production": gbm, "candidate": lr}
    history = store.promote("--history", "purchase").stdout.splitlines()
    moves = [line for line in history if "  purchase@" in line][-3:]
    assert f"promote  purchase@production  {gbm} -> {lr} ({gbm} -> archived)  better recall" in moves[0]
    assert f"rollback  purchase@production  {lr} -> {gbm}" in moves[1]
    assert f"promote  purchase@candidate  - -> {lr}" in moves[2]
    user = os.environ.get("LOGNAME") or os.environ.get("USER")
    if user:
        assert all(f"  {user}  " in line for line in moves)


# --- one real lserver on the private store: follows the aliases, shadows the candidate, tokens on ----------------

@pytest.fixture(scope="module")
def lserver(store, tmp_path_factory) -> Server:
    previous = os.environ["BENTOML_HOME"]
    os.environ["BENTOML_HOME"] = str(store.home)  # the harness links the lserver's home to this store
    try:
        started = Server(tmp_path_factory.mktemp("lifecycle-lserver"), {
            "MODEL_REFRESH_SECONDS": str(REFRESH),
            # A patient batcher: on a busy CI machine, 503s for overload would hide what the swap itself does.
            "BATCH_MAX_LATENCY_MS": "20000",
            "SHADOW_MODELS": "purchase@candidate",
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "API_TOKENS": f"other-token-1,{API_TOKEN}",
        })
    finally:
        os.environ["BENTOML_HOME"] = previous
    yield started.wait_until_up()
    started.stop()


def log_lines(lserver: Server) -> list[dict]:
    return list(iter_records(lserver.log_path))


def test_aliases_in_models_listing_and_v1_predict(store, lserver):
    models = {m["requested"]: m for m in lserver.get("/v1/models").json()["models"]}
    production = models["purchase@production"]
    assert production["name"] == "purchase_gbm" and production["aliases"] == ["purchase@production"]
    assert models["purchase@candidate"]["name"] == "purchase_lr"
    body = {"predictions": [{"model_name": "purchase@candidate", "inputs": [RECORD]},
                            {"model_name": "purchase_gbm", "inputs": [RECORD]}]}
    items = lserver.post("/v1/predict", body, headers=AUTH).json()["predictions"]
    assert [(i["status"], i["model_name"]) for i in items] == [("Success", "purchase_lr"), ("Success", "purchase_gbm")]
    assert items[0]["model_version"] == store.book()["purchase"]["candidate"].split(":")[1]


def test_every_primary_line_has_its_shadow_line(lserver):
    for i in range(5):
        assert lserver.post("/predict", RECORD, headers={**AUTH, "x-request-id": f"shadow-p{i}"}).status_code == 200
    records = [{**RECORD, "minutes_watched": 100.0 * i, "courses_started": i} for i in range(4)]
    response = lserver.post("/batch_predict", {"records": records}, headers={**AUTH, "x-request-id": "shadow-b"})
    assert response.status_code == 200 and "shadow" not in response.text and response.json()["model_name"] == "purchase_gbm"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [l for l in log_lines(lserver) if str(l["request_id"]).startswith("shadow-")]
        if len([l for l in lines if l["shadow"]]) >= 9:
            break
        time.sleep(0.2)
    primary = [(l["request_id"], l["model_name"], l["alias"]) for l in lines if not l["shadow"]]
    shadow = [(l["request_id"], l["model_name"], l["alias"]) for l in lines if l["shadow"]]
    assert sorted(r for r, *_ in primary) == sorted(r for r, *_ in shadow) and len(primary) == 9
    assert {(m, a) for _, m, a in primary} == {("purchase_gbm", "purchase@production")}
    assert {(m, a) for _, m, a in shadow} == {("purchase_lr", "purchase@candidate")}
    metrics = lserver.get("/metrics").text
    assert 'serving_shadow_predictions_total{model="purchase_lr"' in metrics
    assert 'serving_shadow_agreements_total{primary="purchase_gbm",shadow="purchase_lr"}' in metrics

    result = run_cli("-m", "monitoring.shadow", "--task", "purchase", "--log", str(lserver.log_path),
                     "--out", str(lserver.workdir / "shadow"))
    report = orjson.loads((lserver.workdir / "shadow" / "purchase.json").read_bytes())
    (comparison,) = report["comparisons"]
    assert comparison["primary"].startswith("purchase_gbm:") and comparison["shadow"].startswith("purchase_lr:")
    assert comparison["records"] >= 9 and 0.0 <= comparison["agreement_rate"] <= 1.0
    assert sum(comparison["histogram"]["counts"]) == comparison["records"]
    worst = comparison["most_disagreeing"][0]
    assert abs(worst["difference"]) == pytest.approx(comparison["difference"]["max_abs"], abs=1e-6)
    assert "minutes_watched" in worst and worst["request_id"].startswith("shadow-")
    assert "agreement" in result.stdout and (lserver.workdir / "shadow" / "purchase.html").exists()


def test_hot_swap_under_load_and_rollback(store, lserver):
    """Concurrency 32 of /predict through a promotion and a rollback: every answer a 200 from a whole model."""
    gbm = store.book()["purchase"]["production"]
    lr = store.book()["purchase"]["candidate"]
    versions = {gbm.split(":")[0]: gbm.split(":")[1], lr.split(":")[0]: lr.split(":")[1]}
    hammer = Hammer(lserver.url + "/predict", orjson.dumps(RECORD), 32, headers=AUTH).start()
    try:
        time.sleep(2)
        timings = {}
        for to_model, args in (("purchase_lr", ("purchase_lr", "--stage", "production")),
                               ("purchase_gbm", ("--rollback", "purchase", "--stage", "production"))):
            store.promote(*args)
            changed = book_changed(store.home)  # when the promotion took effect in the store
            deadline = time.time() + REFRESH + 20  # the refresh period, load and warm-up, on a busy 2-core machine
            while time.time() < deadline and switch_seconds(hammer.answers, changed, to_model) is None:
                time.sleep(0.1)
            time.sleep(REFRESH + 1)
            timings[to_model] = (changed, switch_seconds(hammer.answers, changed, to_model))
    finally:
        answers = hammer.stop()
    assert len(answers) > 100
    failed = [(a.status, a.detail) for a in answers if a.status != 200]
    assert failed == [], f"{len(failed)} non-200 answers, e.g. {failed[:3]}"
    assert all(versions[a.model_name] == a.model_version for a in answers), "an answer mixed two versions"
    for to_model, (changed, took) in timings.items():
        assert took is not None and took < REFRESH + 20, (to_model, took)
        settled = [a.model_name for a in answers if a.started > changed + took + 0.5]
        settled = settled[: len(settled) // 2]  # the settled part of this phase, before the next change
        assert settled and set(settled) == {to_model}, f"answers went back after the swap to {to_model}"
    print(f"swap seconds after the promotion: {({m: round(t, 2) for m, (_, t) in timings.items()})}")
    store.promote(lr, "--stage", "candidate")  # the rollback archived lr: the candidate again for later tests


def test_corrupted_version_is_refused_and_the_old_one_keeps_serving(store, lserver):
    corrupt = store.copy_version("purchase_gbm", "corrupted1", corrupt=True)
    assert store.promote(corrupt, "--stage", "production").returncode == 0, "the store accepts it"
    assert lserver.post("/v1/admin/reload", headers=ADMIN).status_code == 200  # at once, not only on the poll
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        production = {m["requested"]: m for m in lserver.get("/v1/models").json()["models"]}["purchase@production"]
        if production["swap_error"]:
            break
        time.sleep(0.2)
    assert production["status"] == "loaded" and production["name"] == "purchase_gbm"
    assert production["version"] != "corrupted1" and corrupt in production["swap_error"]
    answer = lserver.post("/predict", RECORD, headers=AUTH)
    assert answer.status_code == 200 and answer.json()["model_version"] == production["version"]
    assert 'serving_model_swaps_total{alias="purchase@production",result="failed"}' in lserver.get("/metrics").text
    assert f"not swapping purchase@production to {corrupt}" in lserver.output.read_text()
    store.promote("--rollback", "purchase", "--stage", "production")


# --- admin API and tokens --------------------------------------------------------------------------------------------

ADMIN_ROUTES = [("post", "/v1/admin/reload"), ("post", "/v1/admin/models/purchase_lr:latest/load"),
                ("post", "/v1/admin/models/purchase_lr:latest/unload"), ("get", "/v1/admin/history")]


def test_every_admin_route_needs_the_admin_token(lserver):
    for method, path in ADMIN_ROUTES:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": ADMIN_TOKEN}):
            response = getattr(lserver, method)(path, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.json() == {"detail": "A valid bearer token is required."}
            assert response.headers["www-authenticate"].startswith("Bearer")
        response = getattr(lserver, method)(path, headers=AUTH)  # a valid token of another scope
        assert response.status_code == 403 and response.json() == {"detail": "This token does not grant the admin scope."}
        response = getattr(lserver, method)(path, headers=ADMIN)
        assert response.status_code == 200, (path, response.text)
    history = lserver.get("/v1/admin/history", params={"task": "purchase"}, headers=ADMIN).json()["history"]
    assert {"ts", "user", "task", "stage", "from_version", "to_version", "reason"} <= set(history[-1])
    output = lserver.output.read_text()
    assert "admin POST /v1/admin/reload from 127.0.0.1:" in output
    assert "refused (no valid bearer token) from 127.0.0.1:" in output


def test_load_and_unload_change_what_is_served(lserver):
    assert lserver.post("/v1/admin/models/purchase_lr:latest/load", headers=ADMIN).json()["action"] == "loaded"
    requested = [m["requested"] for m in lserver.get("/v1/models").json()["models"]]
    assert "purchase_lr:latest" in requested
    assert lserver.post("/v1/admin/models/purchase_lr:latest/unload", headers=ADMIN).status_code == 200
    assert "purchase_lr:latest" not in [m["requested"] for m in lserver.get("/v1/models").json()["models"]]
    assert lserver.post("/v1/admin/models/purchase_lr:latest/unload", headers=ADMIN).status_code == 404
    missing = lserver.post("/v1/admin/models/no_such_model/load", headers=ADMIN)
    assert missing.status_code == 409 and "no_such_model" in missing.json()["detail"]
    assert lserver.post("/v1/admin/models/bad name!/load", headers=ADMIN).status_code == 422


def test_an_admin_load_holds_against_refreshes_racing_it(lserver):
    """A refresh that read the stage book before an admin load recorded itself unloaded the model again (the book
    still listed the earlier unload) until the next refresh: CI caught it once. Refreshes back to back hit that
    window; each answer is checked at once, and again after refreshes have run."""
    stop = threading.Event()

    def refresh() -> None:
        while not stop.is_set():
            lserver.post("/v1/admin/reload", headers=ADMIN)

    racing = threading.Thread(target=refresh, daemon=True)
    racing.start()
    try:
        for cycle in range(12):
            for action, served in (("load", True), ("unload", False)):
                assert lserver.post(f"/v1/admin/models/purchase_lr:latest/{action}", headers=ADMIN).status_code == 200
                for _ in range(2):
                    requested = [m["requested"] for m in lserver.get("/v1/models").json()["models"]]
                    assert ("purchase_lr:latest" in requested) is served, (cycle, action)
                    time.sleep(0.3)  # refreshes ran after the call
    finally:
        stop.set()
        racing.join()


def test_prediction_routes_need_an_api_token(lserver):
    for path, body in (("/predict", RECORD), ("/batch_predict", {"records": [RECORD]}),
                       ("/v1/predict", {"predictions": [{"model_name": "purchase_gbm", "inputs": [RECORD]}]})):
        assert lserver.post(path, body).status_code == 401
        assert lserver.post(path, body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert lserver.post(path, body, headers=ADMIN).status_code == 403, "the admin token is not an API token"
        assert lserver.post(path, body, headers=AUTH).status_code == 200
        assert lserver.post(path, body, headers={"Authorization": "Bearer other-token-1"}).status_code == 200
    assert lserver.get("/v1/models").status_code == 200 and lserver.get("/readyz").status_code == 200


def test_every_route_against_every_token_on_a_real_server(lserver):
    """API_TOKENS and ADMIN_TOKEN set, FEEDBACK_TOKENS not (feedback takes the API tokens): every route of /docs.json
    and BentoML's own, with a trailing slash too, against no token, a wrong one, and each scope's."""
    spec = lserver.get("/docs.json").json()
    routes = [(path, method.upper()) for path, item in spec["paths"].items() for method in item]
    routes += [(path, "GET") for path in ("/livez", "/healthz", "/readyz", "/metrics", "/", "/docs.json", "/schema.json")]
    routes += sorted(UNDOCUMENTED)
    assert {path for path, _ in routes} == set(EXPECTED) - {"/static_content/{path:path}"}
    version = lserver.get("/v2/models/purchase_gbm").json()["versions"][0]
    takes = {Scope.PREDICT: API_TOKEN, Scope.FEEDBACK: API_TOKEN, Scope.ADMIN: ADMIN_TOKEN}
    for template, method in routes:
        scope = EXPECTED[template]
        for path in variants(concrete(template, version)):
            for token in (None, "wrong-token", API_TOKEN, ADMIN_TOKEN):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = httpx.request(method, lserver.url + path, headers=headers, timeout=60,
                                         **({"json": {}} if method == "POST" else {}))
                where = (method, path, token, response.status_code, response.text[:100])
                if scope is Scope.PUBLIC or token == takes[scope]:
                    assert response.status_code not in (401, 403), where
                else:
                    assert response.status_code == (403 if token in (API_TOKEN, ADMIN_TOKEN) else 401), where


def test_tokens_never_leak(lserver):
    lserver.post("/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"})
    lserver.post("/predict", RECORD, headers={"Authorization": f"Bearer {API_TOKEN}x"})
    seen = [lserver.output.read_text(), read_log(lserver.log_path).to_json(), lserver.get("/metrics").text,
            lserver.get("/v1/models").text, lserver.get("/docs.json").text,
            lserver.get("/v1/admin/history", headers=ADMIN).text, lserver.post("/v1/admin/reload", headers=ADMIN).text]
    for text in seen:
        assert ADMIN_TOKEN not in text and API_TOKEN not in text


def test_admin_routes_are_off_without_a_token(server):
    """The default configuration (no ADMIN_TOKEN): the admin routes do not exist, the prediction routes are open."""
    for method, path in ADMIN_ROUTES:
        assert getattr(server, method)(path, headers=ADMIN).status_code == 404
    assert server.post("/predict", RECORD).status_code == 200


def test_settings_check_aliases_against_the_store(trained_store):
    """In the session's store (purchase_gbm production, purchase_lr candidate): aliases and names meet there."""
    from training.store import may_serve

    assert may_serve("purchase@production", ["purchase_gbm:latest", "drive_stats_a"])
    assert not may_serve("purchase@production", ["purchase_lr", "drive_stats_a"])
    assert may_serve("purchase_lr", ["purchase@production", "purchase@candidate"])
    assert not may_serve("purchase_lx", ["purchase@production", "purchase@candidate"])
    assert not may_serve("purchase_lr", ["purchase_gbm"])
