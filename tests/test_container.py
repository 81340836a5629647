"""The bento as a real container: built by `bentoml containerize` (buildah) on the local Debian base, served with
buildah's chroot isolation (the engine that runs containers here), and held to `bentoml serve` of the same bento.

One image per session (module fixture): its build is most of this module's time, and reported in the output.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from bench.harness import free_port
from deploy.run import Container, settings_from_environment
from monitoring.predictlog import iter_records, log_files
from tests.conftest import ROOT, run_cli
from tests.test_service import SEED_RECORDS, SEED_V1, students

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
MANIFESTS = ROOT / "deploy" / "k8s"
TOKEN = "container-test-token"
VOLATILE = {"prediction_id", "prediction_ids", "duration_ms", "load_seconds", "aliases"}  # per call, per start, per store's stage book


def _require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: apt-get install -y buildah podman debootstrap (.ci/run does)")


def _pod_env(pod: str) -> dict[str, str]:
    """The server container's literal environment from deploy/k8s/deployment.yaml, for one pod name."""
    container = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]
    values = {"POD_NAME": pod}
    for entry in container["env"]:
        if "value" in entry:
            values[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], entry["value"])
    return values


@pytest.fixture(scope="module")
def bento(trained_store) -> str:
    output = run_cli("-m", "bentoml", "build", ".").stdout
    return re.search(r"purchase_serving:[a-z0-9]+", output).group(0)


@pytest.fixture(scope="module")
def served_models(bento, bentoml_home) -> dict[str, str]:
    """The exact versions the bento carries: the host's store may have newer ones, or moved aliases."""
    bento_yaml = Path(bentoml_home) / "bentos" / "purchase_serving" / bento.split(":")[1] / "bento.yaml"
    tags = [m["tag"] for m in yaml.safe_load(bento_yaml.read_text())["models"]]
    return {"SERVED_MODELS": ",".join(tags), "DEFAULT_PURCHASE_MODEL": "purchase_gbm", "API_TOKENS": TOKEN}


@pytest.fixture(scope="module")
def image(bento):
    _require("buildah", "debootstrap", "podman")
    name = f"localhost/purchase-serving-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    result = run_cli("-m", "deploy.build", "--bento", bento, "--image", name, timeout=3000)
    print(result.stdout[-2000:])
    report = json.loads((ROOT / "artifacts" / "container" / "build.json").read_text())
    print(f"container image: {report['size_bytes'] / 1e9:.2f} GB, built in {time.monotonic() - started:.0f} s "
          f"(base {report['base_seconds']:.0f} s, made now: {report['base_made_now']}), load {report['loadavg']}")
    tag = f"{name}:{bento.split(':')[1]}"
    yield tag
    # Removing the last name of an image also removes its untagged parents, which are buildah's layer cache: the
    # newest test image keeps one name, so the next run builds only what changed (and replaces it).
    subprocess.run(["buildah", "tag", tag, "localhost/purchase-serving-test:last"], check=True, capture_output=True)
    for reference in (tag, f"{name}:latest"):
        subprocess.run(["buildah", "rmi", reference], capture_output=True)


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("container-state")


@pytest.fixture(scope="module")
def container(image, state, served_models, tmp_path_factory):
    env = {**_pod_env("pod-0"), **served_models}
    env.pop("POD_NAME")
    running = Container(image, port=free_port(), state=str(state), env=env, engine_name="buildah",
                        output=tmp_path_factory.mktemp("container") / "server.out").start()  # fmt: skip
    try:
        running.wait_until_ready()
    except (RuntimeError, TimeoutError) as exc:
        running.stop()
        pytest.fail(f"{exc}:\n{Path(running.output.name).read_text()[-3000:]}")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def host_server(start_server, bento, served_models):
    return start_server(env=served_models, target=bento)


def _normal(value):
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _first_difference(a, b, where=""):
    """Where two JSON values first differ, for the failure message (pytest's diff cuts long lists)."""
    a, b = _normal(a), _normal(b)
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key, "<absent>") != b.get(key, "<absent>"):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{index}]")
    return f"{where}: host {a!r:.200} container {b!r:.200}"


AUTH = {"Authorization": f"Bearer {TOKEN}"}
bad_field = [dict(SEED_RECORDS[0], days_on_platform=-3), dict(SEED_RECORDS[1], minutes_watched="lots")]
rule = [dict(SEED_RECORDS[0], practice_exams_passed=9)]
CASES = [
    ("POST", "/batch_predict", {"records": SEED_RECORDS}),
    *[("POST", "/predict", record) for record in SEED_RECORDS],
    ("POST", "/v1/predict", SEED_V1),
    ("POST", "/v1/predict", {"predictions": [{"model_name": "purchase_gbm", "inputs": SEED_RECORDS},
                                             {"model_name": "no_such_model"}], "ensemble": "mean"}),
    ("POST", "/batch_predict", {"records": bad_field}),
    ("POST", "/batch_predict", {"records": rule}),
    ("POST", "/batch_predict", {"records": []}),
    ("POST", "/predict", {"records": SEED_RECORDS}),
    ("GET", "/v1/models", None),
    ("GET", "/v2/models/purchase_gbm", None),
]


def test_seed_contracts_answer_exactly_as_bentoml_serve(container, host_server):
    compared = 0
    for method, path, body in CASES:
        answers = [httpx.request(method, url + path, json=body, headers=AUTH, timeout=60)
                   for url in (host_server.url, container.url)]  # fmt: skip
        host, boxed = answers
        assert boxed.status_code == host.status_code, (path, body, host.text, boxed.text)
        assert boxed.headers["content-type"] == host.headers["content-type"], path
        assert _normal(boxed.json()) == _normal(host.json()), (path, body, _first_difference(host.json(), boxed.json()))
        compared += 1
    assert compared == len(CASES)


def test_configured_by_environment_only(container):
    """The tokens and the served versions came in as environment variables (no file, no argument)."""
    assert httpx.post(container.url + "/predict", json=SEED_RECORDS[0], timeout=30).status_code == 401
    models = httpx.get(container.url + "/v1/models", timeout=30).json()["models"]
    assert {m["requested"] for m in models} == set(container.env["SERVED_MODELS"].split(","))


def test_runs_as_non_root_with_health_and_metrics(container):
    main = container.main_process()
    assert main.uids().real == 1034 and main.cmdline()[1:3] == ["/app/.venv/bin/bentoml", "serve"]
    assert httpx.get(container.url + "/livez", timeout=10).status_code == 200
    assert httpx.get(container.url + "/readyz", timeout=10).status_code == 200
    httpx.post(container.url + "/batch_predict", json={"records": SEED_RECORDS}, headers=AUTH, timeout=30)
    metrics = httpx.get(container.url + "/metrics", timeout=10)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert re.search(r'serving_predictions_total\{[^}]*endpoint="/batch_predict"[^}]*\} [1-9]', metrics.text)
    assert "bentoml_service_request_total" in metrics.text


def test_prediction_log_lands_on_the_mounted_volume(container, state):
    request_id = "volume-check"
    answer = httpx.post(container.url + "/batch_predict", json={"records": SEED_RECORDS},
                        headers={**AUTH, "X-Request-ID": request_id}, timeout=30)  # fmt: skip
    assert answer.status_code == 200
    log = Path(container.env["PREDICTION_LOG_PATH"].replace(container.state_dir, str(state), 1))
    assert log.parent.parent == state and log.name == "pod-0.jsonl", "the Deployment's per-pod path"
    rows = [r for r in iter_records(log) if r["request_id"] == request_id]
    assert len(rows) == 3 and [r["prediction_id"] for r in rows] == [p["prediction_id"] for p in answer.json()["predictions"]]
    files = log_files(log)
    assert files and all(f.stat().st_uid == 1034 for f in files), "written by the image's user, not root"


def test_sigterm_under_light_load_loses_no_logged_answer(container, state):
    """Four clients send single records and two send 10,000-record batches; SIGTERM reaches the container's main
    process (as `docker stop` and Kubernetes do) while batches are in flight.

    Drained: every request sent before the signal is answered 200, and every 200 is in the log. After the signal
    the server soon takes no new request: a connection is refused, or a keep-alive connection the server closes
    as idle fails the request sent on it (the HTTP/1.1 race clients retry); such a request was never read, so it
    is not in the log either."""
    small = students(400, seed=24)
    big = json.dumps({"records": students(10_000, seed=25)}).encode()
    sent: list[tuple[str, float, str]] = []  # (request id, when it was sent, outcome)
    signalled: list[float] = []

    async def client(index: int, batches: bool) -> None:
        async with httpx.AsyncClient(base_url=container.url, timeout=60, headers=AUTH) as http:
            n = 0
            while not signalled or time.monotonic() < signalled[0] + 3:
                n += 1
                request_id, started = f"term-{index}-{n}", time.monotonic()
                try:
                    if batches:
                        response = await http.post("/batch_predict", content=big, headers={
                            "Content-Type": "application/json", "X-Request-ID": request_id})  # fmt: skip
                    else:
                        response = await http.post("/predict", json=small[n % 400], headers={"X-Request-ID": request_id})
                    outcome = str(response.status_code)
                except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError) as exc:
                    outcome = type(exc).__name__
                    await asyncio.sleep(0.05)
                sent.append((request_id, started, outcome))

    async def scenario() -> None:
        tasks = [asyncio.create_task(client(i, batches=i >= 4)) for i in range(6)]
        await asyncio.sleep(3)
        signalled.append(time.monotonic())
        container.terminate()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    status = container.process.wait(timeout=60)
    container.stop()  # removes the working container and anything the server left
    stats: dict[str, int] = {}
    log = Path(container.env["PREDICTION_LOG_PATH"].replace(container.state_dir, str(state), 1))
    logged = {r["request_id"] for r in iter_records(log, stats)}
    before = [(rid, outcome) for rid, started, outcome in sent if started < signalled[0]]
    after = [(rid, outcome) for rid, started, outcome in sent if started >= signalled[0]]
    answered = [rid for rid, _, outcome in sent if outcome == "200"]
    summary = {when: {o: sum(1 for _, x in group if x == o) for o in {x for _, x in group}}
               for when, group in (("sent before SIGTERM", before), ("after", after))}  # fmt: skip
    print(f"SIGTERM under load: {summary}; exit status {status}")
    assert status == 0, "the server did not exit cleanly on SIGTERM"
    assert stats["skipped"] == 0, "a torn line in the log"
    assert all(outcome == "200" for _, outcome in before), f"a request in flight was not answered: {summary}"
    assert sum(1 for rid, _ in before if rid.startswith(("term-4-", "term-5-"))) >= 2 and len(before) > 20
    # After the signal, a request is answered and logged (the listener was still open) or neither: never one
    # without the other.
    assert all((outcome == "200") == (rid in logged) for rid, outcome in after), summary
    assert set(answered) <= logged, f"{len(set(answered) - logged)} answered requests missing from the log"


def test_drift_cronjob_runs_in_the_image_on_the_logged_volume(image, state, container):
    """deploy/k8s/cronjob-drift.yaml's command, environment and working folder, run in the image against the log
    the server wrote on the volume (after test_sigterm...: thousands of rows)."""
    job = yaml.safe_load((MANIFESTS / "cronjob-drift.yaml").read_text())
    spec = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = [arg for entry in spec["env"] for arg in ("-e", f"{entry['name']}={entry['value']}")]
    name = f"purchase-serving-drift-{uuid.uuid4().hex[:8]}"
    config = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", image], check=True,
                                       capture_output=True, text=True).stdout)["OCIv1"]["config"]  # fmt: skip
    subprocess.run(["buildah", "from", "--name", name, image], check=True, capture_output=True)
    try:
        result = subprocess.run(
            ["buildah", "run", "--isolation", "chroot", "-v", f"{state}:{container.state_dir}", *env,
             "--workingdir", spec["workingDir"], name, "--", *config["Entrypoint"], *spec["args"]],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((state / "drift" / "latest.json").read_text())
    assert (state / "drift" / "latest.json").stat().st_uid == 1034
    print(result.stdout[-1500:])
    assert summary["purchase_gbm"]["rows"] >= 20_000, "the window holds the batches logged under SIGTERM"


def test_docker_and_podman_commands_publish_mount_and_configure():
    """Where docker or podman run containers (not on this machine), `make container-run` is their `run` command."""
    for engine in ("docker", "podman"):
        command = Container("img:1", port=8080, state="vol", env={"API_TOKENS": "x"}, engine_name=engine).command()
        assert command[:3] == [engine, "run", "--rm"] and command[-1] == "img:1"
        assert "127.0.0.1:8080:3000" in command and "vol:/var/lib/purchase-serving" in command
        assert command[command.index("-e") + 1] == "API_TOKENS=x"


def test_state_dir_is_the_bentofile_value():
    from deploy.build import bento_env

    assert bento_env("STATE_DIR") == Container("i", port=1, state="s", env={}, engine_name="docker").state_dir
    assert bento_env("BENTOML_DO_NOT_TRACK") == "True" and bento_env("DO_NOT_TRACK") == "1"
    assert os.access(ROOT / "deploy" / "container" / "setup.sh", os.X_OK)


def test_make_container_run_serves_and_stops_on_ctrl_c(image, served_models, tmp_path):
    """`make container-run`'s command: settings from the shell reach the container; Ctrl-C (SIGINT) stops the server
    with SIGTERM and leaves no working container and no process behind."""
    import signal

    port = free_port()
    # The suite's own settings (the fast tier sets PREDICTION_LOG_PATH to a host folder) would be passed on as the
    # user's: the shell here holds only what this test sets.
    shell = {k: v for k, v in os.environ.items() if k not in settings_from_environment()}
    env = {**shell, **served_models, "CONTAINER_ENGINE": "buildah", "PORT": str(port)}
    runner = subprocess.Popen([sys.executable, "-m", "deploy.run", "--image", image, "--state", str(tmp_path / "state")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        ready = Container(image, port=port, state="", env={}, engine_name="buildah")
        ready.process = runner
        ready.wait_until_ready()
        assert httpx.post(ready.url + "/predict", json=SEED_RECORDS[0], timeout=30).status_code == 401, "API_TOKENS"
        assert httpx.post(ready.url + "/predict", json=SEED_RECORDS[0], headers=AUTH, timeout=30).status_code == 200
        names = subprocess.run(["buildah", "containers", "--format", "{{.ContainerName}}"], capture_output=True,
                               text=True, check=True).stdout.split()  # fmt: skip
        ours = [name for name in names if name.startswith("purchase-serving-")]
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=60) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
    output = runner.stdout.read().decode()
    assert "Service instance cleanup finalized" in output, output[-2000:]
    left = subprocess.run(["buildah", "containers", "--format", "{{.ContainerName}}"], capture_output=True, text=True,
                          check=True).stdout.split()  # fmt: skip
    assert ours and not set(ours) & set(left), "the working container was not removed"
    with pytest.raises(httpx.ConnectError):  # no worker outlived the server holding its socket
        httpx.get(ready.url + "/livez", timeout=5)
    assert any(r["endpoint"] == "/predict" for r in iter_records(tmp_path / "state" / "prediction_log.jsonl"))
