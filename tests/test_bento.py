"""Deployment: the bento builds offline, records its models, serves by tag, and carries a Dockerfile."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from tests.conftest import ROOT, run_cli
from tests.test_service import SEED_RECORDS
from training.store import load_model


def test_bentofile_packages_are_the_pyproject_pins():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]["packages"]
    assert bentofile == pyproject


def test_bento_builds_records_models_and_serves_by_tag(trained_store, bentoml_home, start_server):
    output = run_cli("-m", "bentoml", "build", ".").stdout
    tag = re.search(r"purchase_serving:[a-z0-9]+", output).group(0)
    bento_dir = Path(bentoml_home) / "bentos" / "purchase_serving" / tag.split(":")[1]
    recorded = {m["tag"] for m in yaml.safe_load((bento_dir / "bento.yaml").read_text())["models"]}
    expected = {f"{name}:{load_model(name).version}" for name in ("purchase_gbm", "purchase_lr", "drive_stats_a", "drive_stats_b")}
    assert recorded == expected
    dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM " in dockerfile and "bentoml" in dockerfile

    server = start_server(target=tag)
    response = server.post("/batch_predict", {"records": SEED_RECORDS})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 3
