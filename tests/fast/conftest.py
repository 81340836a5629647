"""The fast tier: the service's ASGI app in this process (Starlette's TestClient runs its lifespan, so the models
load exactly as in `bentoml serve`), against the same real model store. Tests that need a process (batching
across connections, SIGKILL, multiprocess metrics, Prometheus, a bento) stay in the real-server tier."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before the service is imported anywhere in this session: its log and drift state go to a temporary folder.
_WORKDIR = Path(tempfile.mkdtemp(prefix="inprocess-"))
os.environ["PREDICTION_LOG_PATH"] = str(_WORKDIR / "prediction_log.jsonl")
os.environ["DRIFT_STATE_PATH"] = str(_WORKDIR / "drift" / "latest.json")


class InProcessServer:
    """What the contract tests need of a server, served by the ASGI app in this process."""

    def __init__(self, client, log_path: Path):
        self.client = client
        self.url = ""
        self.log_path = log_path

    def post(self, path: str, payload=None, **kwargs):
        return self.client.post(path, json=payload, **kwargs)

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)


@pytest.fixture(scope="session")
def server(trained_store):
    from starlette.testclient import TestClient

    from settings import get_settings

    settings = get_settings()
    assert settings.prediction_log_path == _WORKDIR / "prediction_log.jsonl", "settings were read before the fast tier set them"
    import service

    with TestClient(service.PurchaseService.to_asgi(), raise_server_exceptions=False) as client:
        yield InProcessServer(client, settings.prediction_log_path)
