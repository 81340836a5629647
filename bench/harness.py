"""Start a real `bentoml serve` process on a free loopback port: shared by the tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def train_if_missing(*models: str) -> None:
    """Train the named models unless the store has them, so a benchmark runs as typed on a fresh clone."""
    subprocess.run([sys.executable, "-m", "training.train", "--if-missing", "--models", *models], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_home(workdir: Path) -> Path:
    """A BENTOML_HOME of this server's own that shares the model and bento stores.

    `bentoml serve` wipes `$BENTOML_HOME/prometheus_multiproc_dir` when it starts, so two servers on one home
    freeze each other's metrics; each server gets its own home, with the stores linked in.
    """
    shared = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    home = workdir / "bentoml_home"
    home.mkdir(exist_ok=True)
    for store in ("models", "bentos"):
        (shared / store).mkdir(parents=True, exist_ok=True)
        if not (home / store).exists():
            (home / store).symlink_to(shared / store, target_is_directory=True)
    return home


def _bentoml_of(root: Path | None) -> Path:
    own = Path(root) / ".venv" / "bin" / "bentoml" if root else None
    return own if own and own.exists() else Path(sys.executable).parent / "bentoml"


class Server:
    """A real `bentoml serve` process on a free loopback port, with its own prediction log."""

    def __init__(self, workdir: Path, env: dict[str, str], target: str = ".", root: Path | None = None):
        """`root`: the project checkout to serve (this one by default), with its own .venv when it has one."""
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
        self.env["BENTOML_HOME"] = str(private_home(workdir))
        self.workdir = workdir
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [str(_bentoml_of(root)), "serve", target, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=root or ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
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
