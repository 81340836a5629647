"""Shared fixtures: a real model store in a temporary BENTOML_HOME, trained once per session by the real CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

# Before anything imports bentoml: the store lives in a temporary home for the whole session.
_HOME = Path(tempfile.mkdtemp(prefix="bentoml-home-"))
os.environ["BENTOML_HOME"] = str(_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="prom-"))

ROOT = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real `bentoml serve` process on a free loopback port, with its own prediction log."""

    def __init__(self, workdir: Path, env: dict[str, str], target: str = "."):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prediction_log.jsonl"
        self.output = workdir / "server.out"
        self.env = {
            **os.environ,
            "PREDICTION_LOG_PATH": str(self.log_path),
            "DRIFT_STATE_PATH": str(workdir / "drift" / "latest.json"),
            **env,
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # bentoml serve manages its own
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_until_up(self, timeout: float = 120, ready: bool = True) -> "Server":
        """Wait for /livez (and /readyz when `ready`)."""
        deadline = time.monotonic() + timeout
        path = "/readyz" if ready else "/livez"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited {self.process.returncode}:\n{self.output.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.url}{path} not up in {timeout}s:\n{self.output.read_text()[-4000:]}")

    def post(self, path: str, payload=None, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, json=payload, timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=60, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


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
