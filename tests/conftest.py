"""Shared fixtures: a real model store in a temporary BENTOML_HOME, trained once per session by the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Before anything imports bentoml: the store lives in a temporary home for the whole session.
_HOME = Path(tempfile.mkdtemp(prefix="bentoml-home-"))
os.environ["BENTOML_HOME"] = str(_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="prom-"))
# The prediction log and drift artifacts default to STATE_DIR: never the user's own state folder in tests.
os.environ["STATE_DIR"] = str(_HOME.parent / f"{_HOME.name}-state")

ROOT = Path(__file__).resolve().parent.parent
FAST_TIER = ROOT / "tests" / "fast"


def pytest_configure(config: pytest.Config) -> None:
    # `make test-fast` alone trains smaller sets (its contracts compare answers with the stored models, whatever
    # their quality); a session that also runs the real tier trains the full sets its model tests need.
    paths = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    if paths and all(path.is_relative_to(FAST_TIER) for path in paths):
        os.environ.setdefault("PURCHASE_ROWS", "5000")
        os.environ.setdefault("DRIVE_ROWS", "20000")

from bench.harness import Server  # noqa: E402  (after BENTOML_HOME is set)


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600):
    """Run one of the project's CLIs the way a user does, in the session's store."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def trained_store(bentoml_home: Path) -> str:
    """The four default models, trained by `python -m training.train`; returns its printed metrics table."""
    return run_cli("-m", "training.train").stdout


@pytest.fixture(scope="session")
def start_server(trained_store, tmp_path_factory):
    """Start servers with given settings; every one is stopped at the end of the session."""
    servers: list[Server] = []

    def start(env: dict[str, str] | None = None, ready: bool = True, target: str = ".") -> Server:
        server = Server(tmp_path_factory.mktemp("server"), env or {}, target)
        servers.append(server)
        return server.wait_until_up(ready=ready)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server) -> Server:
    """The default configuration: all four models, batching on, no A/B."""
    return start_server()


def raw_post(server, path: str, content: bytes, content_type: str):
    """POST raw bytes to a real server or to the in-process app (tests/fast) alike."""
    import httpx

    client = getattr(server, "client", None)
    if client is not None:
        return client.post(path, content=content, headers={"Content-Type": content_type})
    return httpx.post(server.url + path, content=content, headers={"Content-Type": content_type}, timeout=60)
