"""Training proposes, it does not promote (issue 22): the README's own command on a store that has a production model
makes the new version the candidate and says so in one line, with production's metrics on the same held-out rows;
`--promote` takes production, audited. The fresh store's layout is tests/test_lifecycle.py's first test."""

from __future__ import annotations

import orjson
import pytest

from bench.bench_lifecycle import private_store
from tests.conftest import run_cli
from training.data import generate_purchase


@pytest.fixture(scope="module")
def home(trained_store, bentoml_home, tmp_path_factory):
    return private_store(bentoml_home, tmp_path_factory.mktemp("propose-store"))


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    path = tmp_path_factory.mktemp("propose-data") / "students.csv"
    generate_purchase(10_000, seed=7).to_csv(path, index=False)  # what `make sample` writes
    return path


def book(home) -> dict:
    return orjson.loads((home / "models" / ".lifecycle-stages.json").read_bytes())["purchase"]


def train(home, *args: str):
    return run_cli("-m", "training.train", "--task", "purchase", *args, env={"BENTOML_HOME": str(home)})


def test_training_on_a_file_proposes_a_candidate_and_leaves_production(home, students):
    before = book(home)
    out = train(home, "--data", str(students)).stdout
    after = book(home)
    assert after["production"] == before["production"], "training moved production"
    assert after["candidate"] != before["candidate"]
    (line,) = [line for line in out.splitlines() if line.startswith("purchase@candidate = ")]
    assert line.startswith(f"purchase@candidate = {after['candidate']}: ROC AUC ")
    assert "on 2,000 held-out rows" in line  # 20% of 10,000
    assert f"production {before['production']} on the same rows: ROC AUC " in line
    assert "Production unchanged: `python -m training.rollout start --task purchase`" in line
    new_versions = [row.split()[0] for row in out.splitlines() if row.startswith("purchase_")]
    assert after["candidate"] in new_versions and len(new_versions) == 2
    other = next(tag for tag in new_versions if tag != after["candidate"])
    assert line.endswith(f"{other} archived")
    assert other not in after.values()


def test_promote_takes_production_explicitly_and_audited(home, students):
    before = book(home)
    out = train(home, "--data", str(students), "--models", "purchase_lr", "--promote").stdout
    after = book(home)
    assert after["production"] != before["production"] and after["production"].startswith("purchase_lr:")
    (line,) = [line for line in out.splitlines() if line.startswith("purchase@production = ")]
    assert f"(--promote; was {before['production']})" in line
    history = run_cli("-m", "training.promote", "--history", "purchase", env={"BENTOML_HOME": str(home)}).stdout
    assert f"{before['production']} -> {after['production']}" in history and "trained; --promote" in history
