"""The monitoring loop end to end: a real service, simulated traffic, its real log, the Evidently drift job,
drift gauges back on /metrics, and a real Prometheus scraping the service."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from bench.harness import free_port
from monitoring.predictlog import read_log
from tests.conftest import ROOT, run_cli
from tests.test_service import SEED_RECORDS


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def loop_server(server):
    # The session's default server: these tests read metric deltas and `--last` windows, so sharing is safe.
    return server


def test_metrics_move_by_exactly_the_requests_sent(loop_server):
    before = loop_server.get("/metrics").text
    body = loop_server.post("/batch_predict", {"records": SEED_RECORDS}).json()
    single = loop_server.post("/predict", SEED_RECORDS[0]).json()
    assert loop_server.post("/batch_predict", {"records": []}).status_code == 422
    assert loop_server.post("/predict", {**SEED_RECORDS[0], "practice_exams_passed": 9}).status_code == 422
    after = loop_server.get("/metrics").text

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    positives = sum(p["predicted_purchase"] for p in body["predictions"])
    assert moved("serving_predictions_total", endpoint="/batch_predict", predicted_class="1") == positives
    assert moved("serving_predictions_total", endpoint="/batch_predict", predicted_class="0") == 3 - positives
    assert moved("serving_predictions_total", endpoint="/predict") == 1
    assert moved("serving_prediction_probability_count", model="purchase_gbm") == 4
    expected_sum = sum(p["predicted_purchase_probability"] for p in body["predictions"]) + single["predicted_purchase_probability"]
    assert moved("serving_prediction_probability_sum", model="purchase_gbm") == pytest.approx(expected_sum)
    assert moved("serving_batch_rows_sum", endpoint="/batch_predict") == 3
    assert moved("serving_validation_failures_total", endpoint="/batch_predict", reason="too_short") == 1
    assert moved("serving_validation_failures_total", endpoint="/predict", reason="rule") == 1
    assert moved("serving_feature_category_total", model="purchase_gbm", feature="student_country") == 4
    assert moved("serving_feature_decile_total", model="purchase_gbm", feature="minutes_watched") == 4
    assert moved("serving_inference_seconds_count", model="purchase_gbm") == 2
    assert metric(after, "serving_model_loaded", model="purchase_gbm") == 1


def test_simulated_traffic_drift_job_and_gauges(loop_server, tmp_path):
    state = loop_server.env["DRIFT_STATE_PATH"]
    env = {"PREDICTION_LOG_PATH": str(loop_server.log_path), "DRIFT_STATE_PATH": state}

    run_cli("-m", "monitoring.simulate", "--url", loop_server.url, "--rows", "3000", "--seed", "101")
    normal = run_cli("-m", "monitoring.drift", "--model", "purchase_gbm", "--last", "3000",
                     "--out", str(tmp_path / "normal"), "--fail-on-drift", env=env, check=False)
    assert normal.returncode == 0, normal.stdout + normal.stderr
    summary = json.loads((tmp_path / "normal" / "purchase_gbm_drift_latest.json").read_text())
    assert summary["dataset_drift"] is False

    run_cli("-m", "monitoring.simulate", "--url", loop_server.url, "--rows", "3000", "--seed", "102", "--shift")
    shifted = run_cli("-m", "monitoring.drift", "--model", "purchase_gbm", "--last", "3000",
                      "--out", str(tmp_path / "shifted"), "--fail-on-drift", env=env, check=False)
    assert shifted.returncode == 1, shifted.stdout + shifted.stderr
    summary = json.loads((tmp_path / "shifted" / "purchase_gbm_drift_latest.json").read_text())
    drifted = {name for name, column in summary["features"].items() if column["drifted"]}
    assert {"student_country", "minutes_watched"} <= drifted
    assert "student_country" in shifted.stdout

    logged = read_log(loop_server.log_path)
    assert len(logged[logged.endpoint == "/batch_predict"]) >= 6_000

    # the service exports the job's result as gauges (it polls the state file every few seconds)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = loop_server.get("/metrics").text
        if metric(text, "serving_drift_feature_drifted", model="purchase_gbm", feature="student_country") == 1:
            break
        time.sleep(1)
    assert metric(text, "serving_drift_feature_drifted", model="purchase_gbm", feature="student_country") == 1
    assert metric(text, "serving_drift_share", model="purchase_gbm") == pytest.approx(summary["drift_share"])
    assert metric(text, "serving_drift_last_run_timestamp_seconds", model="purchase_gbm") > time.time() - 600


def test_real_prometheus_scrapes_the_service(loop_server, tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "install Debian's `prometheus` package (.ci/run does)"
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{loop_server.port}"]}]
    job["scrape_interval"] = job["scrape_timeout"] = "1s"
    config.setdefault("global", {})["scrape_interval"] = "1s"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.out", "wb"),
    )
    try:
        assert loop_server.post("/batch_predict", {"records": SEED_RECORDS}).status_code == 200
        deadline = time.monotonic() + 60
        result: list = []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            assert process.poll() is None, (tmp_path / "prometheus.out").read_text()[-3000:]
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/query",
                                     params={"query": 'sum(serving_predictions_total{endpoint="/batch_predict"})'})
                result = response.json()["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                continue
        assert result, "Prometheus never scraped serving_predictions_total"
        assert float(result[0]["value"][1]) >= 3
        up = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up"}).json()["data"]["result"]
        assert [r["value"][1] for r in up] == ["1"]
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_dashboard_metrics_exist_on_a_live_service(loop_server, tmp_path):
    """Every serving_* or bentoml_* metric the Grafana dashboard queries is really exported; the quality panels' once
    the quality job has run (no outcome needed: it estimates, and runs the A/B comparison on nothing)."""
    assert loop_server.post("/batch_predict", {"records": SEED_RECORDS}).status_code == 200
    state = loop_server.env.get("QUALITY_STATE_PATH") or f"{loop_server.env['STATE_DIR']}/quality/latest.json"
    run_cli("-m", "monitoring.quality", "--task", "purchase", "--log", str(loop_server.log_path), "--outcomes",
            str(tmp_path / "none.jsonl"), "--no-evidently", "--out", str(tmp_path), "--state", state)
    deadline = time.monotonic() + 20  # the service polls the state file every 5 s
    while "serving_model_quality_estimate{" not in loop_server.get("/metrics").text:
        assert time.monotonic() < deadline, "the estimate gauges never appeared"
        time.sleep(0.5)
    dashboard = json.loads((ROOT / "monitoring" / "grafana" / "dashboard.json").read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queried |= set(re.findall(r"\b((?:serving|bentoml)_[a-z_]+)", target.get("expr", "")))
    exported = {line.split("{")[0].split(" ")[0] for line in loop_server.get("/metrics").text.splitlines()
                if line and not line.startswith("#")}
    # An A/B verdict needs two variants on one endpoint: tests/test_loop.py sees it on its A/B server's /metrics.
    # The rollout row's series exist once a rollout, a split or a failing model does: tests/test_rollout.py and
    # tests/test_fleet.py see them on their servers' /metrics.
    later = {"serving_ab_verdict", "serving_ab_arm_weight", "serving_prediction_failures_total",
             *(name for name in queried if name.startswith("serving_rollout_"))}
    missing = {name for name in queried if name not in exported} - later
    assert queried and not missing, missing
