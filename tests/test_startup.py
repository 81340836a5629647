"""Starting a server as a newcomer does: `make serve` twice, a busy port, contradicting settings.

Real processes: `make serve` (serving/serve.py, then `bentoml serve .`) against the session's model store.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bench.harness import free_port, private_home

ROOT = Path(__file__).resolve().parent.parent
BENTOML = str(Path(sys.executable).parent / "bentoml")
RECORD = {
    "student_country": "Canada",
    "days_on_platform": 12,
    "minutes_watched": 45.0,
    "courses_started": 1,
    "practice_exams_started": 0,
    "practice_exams_passed": 0,
    "minutes_spent_on_exams": 0.0,
}


def _env(home: Path, workdir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "BENTOML_HOME": str(home), "PREDICTION_LOG_PATH": str(workdir / "log.jsonl"), **extra}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # as in a user's shell
    return env


def _one_line_refusal(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The start failed with exit 1 and said why in one line (no traceback)."""
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _counted(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    found = re.findall(r'^serving_predictions_total\{endpoint="/predict".*\} (\S+)$', text, re.M)
    return sum(float(value) for value in found)


@pytest.fixture(scope="module")
def make_served(trained_store, tmp_path_factory):
    """A server started by `make serve PORT=...` as a user starts it (default HOST)."""
    workdir = tmp_path_factory.mktemp("make-serve")
    home = private_home(workdir)
    port = free_port()
    with open(workdir / "out.txt", "wb") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "serve", f"PORT={port}"],
            cwd=ROOT, env=_env(home, workdir), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, (workdir / "out.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, (workdir / "out.txt").read_text()[-3000:]
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    yield {"process": process, "url": url, "port": port, "home": home, "workdir": workdir}
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_make_serve_binds_loopback_by_default(make_served):
    server = psutil.Process(make_served["process"].pid)
    listening = {
        conn.laddr.ip
        for proc in [server, *server.children(recursive=True)]
        for conn in proc.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == make_served["port"]
    }
    assert listening == {"127.0.0.1"}


def test_every_server_has_a_metrics_folder_of_its_own(make_served):
    """Not `$BENTOML_HOME/prometheus_multiproc_dir`, which every start on that home empties."""
    server = psutil.Process(make_served["process"].pid)
    folders = {proc.environ().get("PROMETHEUS_MULTIPROC_DIR") for proc in server.children(recursive=True)} - {None}
    assert len(folders) == 1, folders
    [folder] = folders
    assert Path(folder).name.startswith("bentoml-prometheus-") and Path(folder).is_dir()
    assert not Path(folder).is_relative_to(make_served["home"])


@pytest.mark.parametrize("how", ["make serve", "bentoml serve"])
def test_a_failed_second_start_leaves_the_running_servers_metrics_alone(make_served, how, tmp_path):
    url, port = make_served["url"], make_served["port"]
    for _ in range(3):
        assert httpx.post(url + "/predict", json=RECORD, timeout=60).status_code == 200
    before = _counted(url)
    assert before >= 3
    command = (
        ["make", "--no-print-directory", "serve", f"PORT={port}"]
        if how == "make serve"
        else [BENTOML, "serve", ".", "--host", "127.0.0.1", "--port", str(port)]
    )
    # Same port, same BENTOML_HOME: the second start must fail on the port and touch nothing of the first's.
    result = subprocess.run(
        command, cwd=ROOT, env=_env(make_served["home"], tmp_path), capture_output=True, text=True, timeout=120
    )
    assert httpx.post(url + "/predict", json=RECORD, timeout=60).status_code == 200
    assert _counted(url) == before + 1, "the running server lost its metrics"
    if how == "make serve":  # make itself exits 2 after the recipe's 1
        assert result.returncode == 2
        result = subprocess.CompletedProcess(result.args, 1, result.stdout, result.stderr)
    _one_line_refusal(result, f"port {port}", f"PORT={port + 1}")


def test_busy_port_is_refused_before_any_training(tmp_path):
    """An empty store would be trained first (11 s and more): the port is checked before that."""
    home = tmp_path / "empty-home"
    with __import__("socket").socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "serving.serve", "--port", str(port)],
            cwd=ROOT, env=_env(home, tmp_path), capture_output=True, text=True, timeout=120,
        )
    _one_line_refusal(result, f"port {port} on 127.0.0.1 is already in use", f"PORT={port + 1}")
    assert not (home / "models").exists() or not any((home / "models").iterdir()), "training ran first"
    print(f"refused in {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        # By name: the default configuration serves stage aliases, which an empty store cannot resolve at start.
        ({"SERVED_MODELS": "purchase_gmb:latest,purchase_lr:latest", "DEFAULT_PURCHASE_MODEL": "purchase_gbm"},
         "DEFAULT_PURCHASE_MODEL=purchase_gbm"),
        ({"SERVED_MODELS": "purchase_gbm,purchase_lr", "DEFAULT_PURCHASE_MODEL": "purchase_gbm",
          "AB_WEIGHTS": "purchase_gbm=0.9,purchase_lx=0.1"}, "AB_WEIGHTS names purchase_lx"),
        ({"AB_WEIGHTS": "purchase_gbm=0,purchase_lr=0"}, "AB_WEIGHTS must be non-negative and not all zero"),
    ],
)
def test_contradicting_settings_stop_bentoml_serve_in_one_line(settings, named, tmp_path):
    result = subprocess.run(
        [BENTOML, "serve", ".", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT, env=_env(tmp_path / "home", tmp_path, **settings), capture_output=True, text=True, timeout=120,
    )
    _one_line_refusal(result, named)
