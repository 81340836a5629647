"""A fleet follows one stage book: a real server with WORKERS=2 on a private copy of the session's store. The
traffic plan's weights and shadows, the admin API's load and unload, and promotions reach both workers, each
worker says so in the server log, and every answer agrees whichever worker gives it.

Requests are sent on fresh connections (one `httpx.post` each), so both workers answer them; which worker acted is
read from the server log's `[entry_service:purchase_serving:N]` prefix.
"""

from __future__ import annotations

import os
import re
import time

import httpx
import orjson
import pytest

from bench.bench_lifecycle import private_store
from bench.harness import Server
from tests.conftest import run_cli
from tests.test_monitoring_loop import metric
from training.schema import PURCHASE

RECORD = {name: field.examples[0] for name, field in PURCHASE.record.model_fields.items()}
ADMIN_TOKEN = "fleet-admin-3c1d7e"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WORKER = re.compile(r"\[entry_service:purchase_serving:(\d+)\] (.*)")


@pytest.fixture(scope="module")
def home(trained_store, bentoml_home, tmp_path_factory):
    return private_store(bentoml_home, tmp_path_factory.mktemp("fleet-store"))


def start_on(home, workdir, env: dict[str, str]) -> Server:
    previous = os.environ["BENTOML_HOME"]
    os.environ["BENTOML_HOME"] = str(home)  # the harness links the server's home to this store
    try:
        return Server(workdir, env)
    finally:
        os.environ["BENTOML_HOME"] = previous


@pytest.fixture(scope="module")
def fleet(home, tmp_path_factory):
    started = start_on(home, tmp_path_factory.mktemp("fleet"), {"WORKERS": "2", "MODEL_REFRESH_SECONDS": "0.5",
                                                                "ADMIN_TOKEN": ADMIN_TOKEN})
    yield started.wait_until_up()
    started.stop()


def cli(home, *args: str):
    return run_cli(*args, env={"BENTOML_HOME": str(home)})


def revision(home) -> int:
    return orjson.loads((home / "models" / ".lifecycle-traffic.json").read_bytes())["revision"]


def wait_for_revision(server: Server, wanted: int, timeout: float = 30) -> None:
    """Until every worker follows `wanted` (serving_traffic_revision is the lowest of the workers')."""
    deadline = time.monotonic() + timeout
    while metric(server.get("/metrics").text, "serving_traffic_revision") < wanted:
        assert time.monotonic() < deadline, f"the workers did not reach traffic revision {wanted}"
        time.sleep(0.2)


def workers_saying(server: Server, pattern: str) -> set[str]:
    return {worker for worker, line in WORKER.findall(server.output.read_text()) if re.search(pattern, line)}


def test_weights_from_the_book_reach_every_worker(home, fleet):
    cli(home, "-m", "training.traffic", "--task", "purchase", "--weights",
        "purchase@production=0.5,purchase@candidate=0.5", "--reason", "fleet test")
    wait_for_revision(fleet, revision(home))
    weights = fleet.get("/metrics").text
    assert metric(weights, "serving_ab_arm_weight", arm="purchase@candidate") == 0.5
    assert metric(weights, "serving_ab_arm_weight", arm="purchase@production") == 0.5
    assert workers_saying(fleet, r"A/B weights: no split -> purchase@candidate=0\.5,purchase@production=0\.5 "
                                 r"\(stage book revision \d+: fleet test\)") == {"1", "2"}
    chosen = {}
    for key in range(150):
        for _ in range(2):  # the same caller twice: sticky whichever worker answers
            answer = httpx.post(fleet.url + "/predict", json=RECORD, headers={"X-Routing-Key": f"user-{key}"}, timeout=60)
            assert answer.status_code == 200, answer.text
            chosen.setdefault(key, set()).add(answer.json()["model_name"])
    assert all(len(models) == 1 for models in chosen.values()), "one caller was answered by both arms"
    candidate = sum(models == {"purchase_lr"} for models in chosen.values()) / len(chosen)
    assert 0.35 < candidate < 0.65, candidate  # 150 callers at 0.5: the standard deviation is 0.04

    cli(home, "-m", "training.traffic", "--task", "purchase", "--clear")
    wait_for_revision(fleet, revision(home))
    answers = {httpx.post(fleet.url + "/predict", json=RECORD, headers={"X-Routing-Key": f"user-{key}"},
                          timeout=60).json()["model_name"] for key in range(40)}
    assert answers == {"purchase_gbm"}
    assert workers_saying(fleet, r"A/B weights: .* -> no split \(AB_WEIGHTS and SHADOW_MODELS") == {"1", "2"}


def test_admin_load_and_unload_act_on_every_worker(home, fleet):
    def listed() -> list[bool]:
        return ["purchase_lr:latest" in [m["requested"] for m in httpx.get(fleet.url + "/v1/models", timeout=60)
                                          .json()["models"]] for _ in range(16)]

    answer = fleet.post("/v1/admin/models/purchase_lr:latest/load", headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["action"] == "loaded", answer.text
    wait_for_revision(fleet, revision(home))
    assert all(listed()), "a worker does not serve what the admin API loaded"
    assert workers_saying(fleet, r"^loaded purchase_lr:latest \(purchase_lr:\w+\)") == {"1", "2"}

    assert fleet.post("/v1/admin/models/purchase_lr:latest/unload", headers=ADMIN).status_code == 200
    wait_for_revision(fleet, revision(home))
    assert not any(listed()), "a worker still serves what the admin API unloaded"
    assert workers_saying(fleet, r"^unloaded purchase_lr:latest \(purchase_lr:\w+\)") == {"1", "2"}
    history = run_cli("-m", "training.traffic", env={"BENTOML_HOME": str(home)}).stdout
    assert "unload: purchase_lr:latest" in history


def test_a_promotion_and_its_rollback_swap_every_worker(home, fleet):
    book = orjson.loads((home / "models" / ".lifecycle-stages.json").read_bytes())["purchase"]
    gbm, lr = book["production"], book["candidate"]
    cli(home, "-m", "training.promote", "purchase_lr", "--stage", "production", "--reason", "fleet swap")
    deadline = time.monotonic() + 30
    while workers_saying(fleet, rf"swapped purchase@production: {gbm} -> {lr}") != {"1", "2"}:
        assert time.monotonic() < deadline, fleet.output.read_text()[-3000:]
        time.sleep(0.2)
    assert {httpx.post(fleet.url + "/predict", json=RECORD, timeout=60).json()["model_version"]
            for _ in range(30)} == {lr.split(":")[1]}
    assert workers_saying(fleet, rf"swapped purchase@production: {gbm} -> {lr} in [\d.]+s "
                                 rf"\(promote by \S+: fleet swap\)") == {"1", "2"}
    assert workers_saying(fleet, rf"purchase@candidate no longer names a model \(it named {lr}\)") == {"1", "2"}

    cli(home, "-m", "training.promote", "--rollback", "purchase", "--stage", "production")
    deadline = time.monotonic() + 30
    while workers_saying(fleet, rf"swapped purchase@production: {lr} -> {gbm} in [\d.]+s \(rollback by ") != {"1", "2"}:
        assert time.monotonic() < deadline, fleet.output.read_text()[-3000:]
        time.sleep(0.2)
    assert {httpx.post(fleet.url + "/predict", json=RECORD, timeout=60).json()["model_version"]
            for _ in range(30)} == {gbm.split(":")[1]}
    cli(home, "-m", "training.promote", lr, "--stage", "candidate")


def test_a_traffic_plan_that_does_not_read_keeps_the_last_one_and_aliases_still_follow(home, fleet, tmp_path):
    path = home / "models" / ".lifecycle-traffic.json"
    good = path.read_bytes()
    book = orjson.loads((home / "models" / ".lifecycle-stages.json").read_bytes())["purchase"]
    path.write_bytes(b'{"revision": 9, "tasks": {"purchase": ')  # a hand edit gone wrong
    try:
        cli(home, "-m", "training.promote", "purchase_lr", "--stage", "production", "--reason", "plan unreadable")
        deadline = time.monotonic() + 30
        while workers_saying(fleet, rf"swapped purchase@production: {book['production']} -> {book['candidate']} "
                                    r".*plan unreadable") != {"1", "2"}:
            assert time.monotonic() < deadline, fleet.output.read_text()[-3000:]
            time.sleep(0.2)
        assert workers_saying(fleet, r"cannot read the stage book's traffic plan \(keeping revision \d+\)") == {"1", "2"}
        assert fleet.get("/readyz").status_code == 200
        late = start_on(home, tmp_path, {"MODEL_REFRESH_SECONDS": "0.5"})  # a server started while it is unreadable
        try:
            assert late.wait_until_up().get("/readyz").status_code == 200
            assert "cannot read the stage book's traffic plan; serving SERVED_MODELS" in late.output.read_text()
        finally:
            late.stop()
    finally:
        path.write_bytes(good)
        cli(home, "-m", "training.promote", "--rollback", "purchase", "--stage", "production")
        cli(home, "-m", "training.promote", book["candidate"], "--stage", "candidate")
