"""An A/B arm that is not served, on a real server (issue 20, item 6): after the documented promote and rollback,
`purchase@candidate` is empty and `purchase_lr` is served by no slot. AB_WEIGHTS naming it must not turn into a
silent share of 503s: the arm leaves the split, with a warning in the server log and `serving_ab_arm_weight` at 0,
and comes back when a promotion serves it again. (An arm that nothing configured could ever serve stops the start:
tests/test_startup.py, "AB_WEIGHTS names purchase_lx".)
"""

from __future__ import annotations

import os
import re
import time

import orjson
import pytest

from bench.bench_lifecycle import private_store
from bench.harness import Server
from tests.conftest import run_cli
from training.schema import PURCHASE

RECORD = {name: field.examples[0] for name, field in PURCHASE.record.model_fields.items()}
AB = "purchase_gbm=0.5,purchase_lr=0.5"


@pytest.fixture(scope="module")
def home(trained_store, bentoml_home, tmp_path_factory):
    """A private store where the README's promote and rollback left purchase@candidate empty."""
    home = private_store(bentoml_home, tmp_path_factory.mktemp("ab-arms-store"))
    env = {"BENTOML_HOME": str(home)}
    run_cli("-m", "training.promote", "purchase_lr", "--stage", "production", env=env)
    run_cli("-m", "training.promote", "--rollback", "purchase", "--stage", "production", env=env)
    book = orjson.loads((home / "models" / ".lifecycle-stages.json").read_bytes())
    assert "candidate" not in book["purchase"], book
    return home


def arm_weights(server: Server) -> dict[str, float]:
    text = server.get("/metrics").text
    return {arm: float(value) for arm, value in re.findall(r'serving_ab_arm_weight\{arm="([^"]+)"\} (\S+)', text)}


def test_an_unserved_arm_leaves_the_split_and_comes_back_when_served(home, tmp_path_factory):
    previous = os.environ["BENTOML_HOME"]
    os.environ["BENTOML_HOME"] = str(home)  # the harness links the server's home to this store
    try:
        server = Server(tmp_path_factory.mktemp("ab-arms"), {"AB_WEIGHTS": AB, "MODEL_REFRESH_SECONDS": "1"})
    finally:
        os.environ["BENTOML_HOME"] = previous
    try:
        server.wait_until_up()
        assert server.get("/readyz").status_code == 200 and server.get("/v2/health/ready").status_code == 200
        answers = [server.post("/predict", RECORD, headers={"X-Routing-Key": f"user-{i}"}) for i in range(60)]
        assert {a.status_code for a in answers} == {200}, [a.text for a in answers if a.status_code != 200][:3]
        assert {a.json()["model_name"] for a in answers} == {"purchase_gbm"}
        log = server.output.read_text()
        assert "A/B arm purchase_lr is not served" in log and "taken out of AB_WEIGHTS" in log
        assert arm_weights(server) == {"purchase_gbm": 1.0, "purchase_lr": 0.0}

        run_cli("-m", "training.promote", "purchase_lr", "--stage", "candidate", env={"BENTOML_HOME": str(home)})
        deadline = time.monotonic() + 60
        while arm_weights(server).get("purchase_lr") != 0.5 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert arm_weights(server) == {"purchase_gbm": 0.5, "purchase_lr": 0.5}
        assert "A/B arm purchase_lr is served again" in server.output.read_text()
        served = {server.post("/predict", RECORD, headers={"X-Routing-Key": f"user-{i}"}).json()["model_name"]
                  for i in range(60)}
        assert served == {"purchase_gbm", "purchase_lr"}
    finally:
        server.stop()

