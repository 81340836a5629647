"""Drift job and traffic simulator: real prediction logs written by the log's writer from real model predictions.

The drift CLI pays Evidently's import (~10 s) per run, so it runs for real twice (training-like traffic, then
shifted traffic into the same workspace and state file); error paths exit before Evidently is imported and are
tested through `main()` in-process, plus two through a subprocess to see what a user sees.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring import drift, simulate
from monitoring.predictlog import PredictionLog
from settings import get_settings
from tests.conftest import ROOT, run_cli
from tests.logfiles import batch, tear, to_lines
from training.data import generate_purchase
from training.schema import PURCHASE

MODEL = "purchase_gbm"
ROWS = 2_000  # windows of 1,000+ rows are clean on training-like traffic (see drift.DEFAULT_MIN_ROWS)
START = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
# Inside the drift job's default window (the last 24 h) when the tests run.
RECENT = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(microsecond=0)


@pytest.fixture(scope="module")
def model(trained_store):
    from training.store import load_model

    return load_model(f"{MODEL}:latest")


def write_log(path: Path, model, frame: pd.DataFrame, *, start: datetime, version: str | None = None,
              name: str | None = None, batch_rows: int = 500) -> None:
    """Log the model's real predictions on `frame`, a batch per second from `start`."""
    log = PredictionLog(path, max_bytes=1 << 30)
    for number, begin in enumerate(range(0, len(frame), batch_rows)):
        part = frame.iloc[begin : begin + batch_rows]
        proba = model.predict_proba(part)
        assert log.append(batch(part, proba, model.classify(proba), request_id=f"req-{number}",
                                model_name=name or model.name, model_version=version or model.version,
                                ts=start + timedelta(seconds=number)))
    log.close()


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def summary_path(stdout: str) -> Path:
    """The run's own summary file, as the job prints it: `summary PATH (latest: LINK)`."""
    line = next(line for line in stdout.splitlines() if line.startswith("summary "))
    return Path(line.split()[1])


# ------------------------------------------------------------------------------------------------ simulate


def test_draws_look_like_requests_and_the_shift_moves_country_and_minutes():
    normal = simulate.draw_traffic(20_000, seed=5)
    shifted = simulate.draw_traffic(20_000, seed=5, shift=True)
    for frame in (normal, shifted):
        assert list(frame.columns) == PURCHASE.columns
        assert (frame["practice_exams_passed"] <= frame["practice_exams_started"]).all()
        assert (frame[PURCHASE.numerical] >= 0).all().all() and frame.notna().all().all()
    pd.testing.assert_frame_equal(normal, simulate.draw_traffic(20_000, seed=5))
    assert simulate.DEFAULT_SEED != get_settings().seed, "simulated traffic must not replay the training draw"
    assert not normal.equals(generate_purchase(20_000, seed=get_settings().seed)[PURCHASE.columns])

    boosted = ["India", "Nigeria", "Pakistan"]
    assert normal["student_country"].isin(boosted).mean() == pytest.approx(0.25, abs=0.02)
    assert shifted["student_country"].isin(boosted).mean() == pytest.approx(0.70, abs=0.02)
    assert set(shifted["student_country"]) <= set(normal["student_country"])  # same vocabulary, other mix
    ratio = shifted["minutes_watched"].median() / normal["minutes_watched"].median()
    assert ratio == pytest.approx(3.0, rel=0.02)
    assert sum(simulate.shifted_country_shares().values()) == pytest.approx(1.0)


class _StubService(BaseHTTPRequestHandler):
    """Answers /batch_predict like the service: one prediction per record, every third one positive."""

    bodies: list[dict] = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).bodies.append({"path": self.path, "body": body})
        if type(self).status != 200:
            payload = {"detail": "Model is not loaded."}
        else:
            payload = {"predictions": [{"predicted_purchase_probability": 0.5, "predicted_purchase": int(i % 3 == 0)}
                                       for i, _ in enumerate(body["records"])]}
        data = json.dumps(payload).encode()
        self.send_response(type(self).status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_url():
    _StubService.bodies, _StubService.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_simulate_posts_batches_of_records_and_reports_what_came_back(stub_url, capsys):
    assert simulate.main(["--url", stub_url, "--rows", "1200", "--batch", "500", "--shift", "--seed", "3"]) == 0
    assert [len(b["body"]["records"]) for b in _StubService.bodies] == [500, 500, 200]
    assert {b["path"] for b in _StubService.bodies} == {"/batch_predict"}
    assert all(set(b["body"]) == {"records"} for b in _StubService.bodies)
    sent = pd.DataFrame([r for b in _StubService.bodies for r in b["body"]["records"]])
    pd.testing.assert_frame_equal(sent, simulate.draw_traffic(1200, seed=3, shift=True), check_dtype=False)
    out = capsys.readouterr().out
    assert "1200 predictions came back" in out and "33.4% predicted to purchase" in out and "3 requests" in out


def test_simulate_stops_on_an_error_answer(stub_url, capsys):
    _StubService.status = 503
    assert simulate.main(["--url", stub_url, "--rows", "1000", "--batch", "100"]) == 2
    assert len(_StubService.bodies) == 1, "the first error stops the run"
    assert "503" in capsys.readouterr().err


def test_simulate_is_bounded():
    with pytest.raises(SystemExit):
        simulate.main(["--rows", str(simulate.MAX_ROWS + 1)])
    with pytest.raises(SystemExit):
        simulate.main(["--rows", "10", "--batch", str(simulate.MAX_BATCH + 1)])


# ------------------------------------------------------------------------------- drift: the real CLI twice


@pytest.fixture(scope="module")
def drift_runs(model, tmp_path_factory):
    """Two real runs into one output folder, workspace and state file (seeded with another model's entry).
    First, shifted: a log whose recent part is shifted traffic, analysed --since the shift.
    Then, normal, in the default window (the last 24 h): training-like traffic of the last hours (plus another
    version's rows, another model's rows, a torn last line, and shifted traffic older than a day, which must stay
    out). So the last run's drift share is 0.0, the case the dashboard once showed as "no value"."""
    from training.store import load_model

    root = tmp_path_factory.mktemp("drift")
    state = root / "state" / "latest.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"drive_stats_a": {"model_version": "x", "drift_share": 0.1, "features": {}}}))
    env = {"DRIFT_STATE_PATH": str(state)}
    workspace = root / "workspace"
    out = root / "out"

    shifted_log = root / "shifted" / "prediction_log.jsonl"
    write_log(shifted_log, model, simulate.draw_traffic(1_500, seed=21), start=START)
    shift_start = START + timedelta(hours=1)
    write_log(shifted_log, model, simulate.draw_traffic(ROWS, seed=22, shift=True), start=shift_start)
    shifted = run_cli("-m", "monitoring.drift", "--model", model.tag, "--log", str(shifted_log),
                      "--out", str(out), "--workspace", str(workspace), "--since", shift_start.isoformat(),
                      "--fail-on-drift", env=env, check=False)
    one_run = root / "workspace_after_one_run"  # for the dashboard's one-run view
    shutil.copytree(workspace, one_run)

    normal_log = root / "normal" / "prediction_log.jsonl"
    write_log(normal_log, model, simulate.draw_traffic(1_000, seed=10, shift=True), start=RECENT - timedelta(days=2))
    write_log(normal_log, model, simulate.draw_traffic(ROWS, seed=11), start=RECENT)
    write_log(normal_log, model, simulate.draw_traffic(300, seed=12), start=RECENT, version="0ldversion")
    other = load_model("purchase_lr:latest")
    write_log(normal_log, other, simulate.draw_traffic(600, seed=13, shift=True), start=RECENT)
    tear(normal_log)  # a worker was killed mid-write
    normal = run_cli("-m", "monitoring.drift", "--model", MODEL, "--log", str(normal_log), "--out", str(out),
                     "--workspace", str(workspace), "--fail-on-drift", env=env, check=False)
    return {"root": root, "out": out, "state": state, "workspace": workspace, "one_run": one_run,
            "normal": normal, "shifted": shifted,
            "summaries": {"normal": summary_path(normal.stdout), "shifted": summary_path(shifted.stdout)}}


def test_training_like_traffic_shows_no_dataset_drift(drift_runs, model):
    result = drift_runs["normal"]
    assert result.returncode == 0, result.stdout + result.stderr  # --fail-on-drift, and nothing drifted
    summary = read_json(drift_runs["summaries"]["normal"])
    assert summary["dataset_drift"] is False and summary["drifted_columns"] == 0
    assert not [name for name, f in summary["features"].items() if f["drifted"]]
    assert set(summary["features"]) == {*PURCHASE.columns, drift.PREDICTION_COLUMN}
    assert all(0 <= f["score"] < f["threshold"] == 0.1 for f in summary["features"].values())
    assert summary["model_version"] == model.version and summary["reference_rows"] == 5_000
    window = summary["window"]
    assert window["first_ts"] == RECENT.isoformat(), "the day-old rows are outside the default window"
    since = datetime.fromisoformat(window["since"])
    assert timedelta(hours=23, minutes=50) < datetime.now(timezone.utc) - since < timedelta(hours=24, minutes=10)
    assert window["description"].startswith("the last 24h (the default")
    assert result.stdout.splitlines()[0].startswith("window: the last 24h (the default; --since, --last or --all")
    header = result.stdout.splitlines()[1].split()
    assert header == ["feature", "method", "score", "threshold", "drifted"]
    for column in [*PURCHASE.columns, drift.PREDICTION_COLUMN]:
        assert column in result.stdout
    assert "no dataset drift" in result.stdout
    html = Path(summary["report_html"])
    assert html.parent == drift_runs["out"] and html.stat().st_size > 100_000


def header_text(html: Path) -> str:
    """The report's header block as plain text (its tags replaced by spaces)."""
    page = html.read_text(encoding="utf-8")
    match = re.search(r'<body>\s*<header id="drift-report-header".*?</header>', page, re.S)
    assert match, "the header comes first in <body>"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(0)).split())


def test_the_html_report_says_what_it_is_about(drift_runs, model):
    summary = read_json(drift_runs["summaries"]["normal"])
    text = header_text(Path(summary["report_html"]))
    assert f"Data drift of {MODEL}:{model.version}" in text
    assert f"Model {MODEL} (task purchase)" in text and f"Version {model.version}" in text
    assert "Window the last 24h (the default" in text and f"rows logged from {RECENT.isoformat()} to " in text
    assert f"Rows {ROWS} logged rows (current) against 5000 reference rows" in text
    assert "No dataset drift: 0 of 8 columns drifted (share 0.000, threshold 0.3)" in text
    assert "threshold 0.1: student_country" in text and "Jensen-Shannon" in text and "Wasserstein" in text
    assert "Dataset drift when the share of drifted columns reaches 0.3" in text
    assert "Left out 300 rows of version 0ldversion; 1 unparseable log line(s)" in text
    page = Path(summary["report_html"]).read_text(encoding="utf-8")
    assert f"<title>Data drift of {MODEL}:{model.version}, the last 24h" in page

    shifted = read_json(drift_runs["summaries"]["shifted"])
    text = header_text(Path(shifted["report_html"]))
    assert f"DATASET DRIFT: {shifted['drifted_columns']} of 8 columns drifted" in text
    assert f"Window since {(START + timedelta(hours=1)).isoformat()} (--since)" in text


def test_torn_lines_are_skipped_and_counted_other_versions_reported_not_mixed(drift_runs):
    result = drift_runs["normal"]
    summary = read_json(drift_runs["summaries"]["normal"])
    assert summary["lines_skipped"] == 1
    assert summary["other_versions"] == {"0ldversion": 300}
    assert summary["rows"] == ROWS, "neither the other version, the other model nor old rows were mixed in"
    assert "1 unparseable log line(s) skipped" in result.stdout
    assert "300 rows of other versions left out: 0ldversion (300 rows)" in result.stderr
    assert "Traceback" not in result.stderr


def test_shifted_traffic_is_reported_as_drift_naming_country_and_minutes(drift_runs, model):
    result = drift_runs["shifted"]
    assert result.returncode == 1, result.stdout + result.stderr  # --fail-on-drift
    summary = read_json(drift_runs["summaries"]["shifted"])
    assert summary["dataset_drift"] is True
    assert summary["model"] == MODEL and summary["model_version"] == model.version
    assert summary["rows"] == ROWS, "--since keeps only the shifted part of the log"
    assert summary["window"]["first_ts"] >= (START + timedelta(hours=1)).isoformat()
    features = summary["features"]
    assert set(features) == {*PURCHASE.columns, drift.PREDICTION_COLUMN}
    assert features["student_country"]["drifted"] and features["minutes_watched"]["drifted"]
    assert features["student_country"]["method"].startswith("Jensen-Shannon")
    assert features["minutes_watched"]["method"].startswith("Wasserstein")
    assert not features["days_on_platform"]["drifted"]
    assert summary["drift_share"] >= summary["drift_share_threshold"] == drift.DEFAULT_DRIFT_SHARE
    assert summary["drifted_columns"] == sum(f["drifted"] for f in features.values())
    assert "DATASET DRIFT" in result.stdout and "DRIFTED" in result.stdout
    html = Path(summary["report_html"])
    assert html.stat().st_size > 100_000 and b"minutes_watched" in html.read_bytes()


def test_state_file_merges_models_and_the_workspace_keeps_both_runs(drift_runs, model):
    state = read_json(drift_runs["state"])
    assert set(state) == {"drive_stats_a", MODEL}, "other models' entries are kept"
    entry = state[MODEL]
    assert entry["model_version"] == model.version and entry["rows"] == ROWS
    assert entry["dataset_drift"] is False and entry["drift_share"] == 0.0, "the last run (normal traffic) wins"
    assert entry["features"]["student_country"]["drifted"] is False
    assert set(entry["features"]["minutes_watched"]) == {"score", "method", "threshold", "drifted"}
    assert abs(entry["ts"] - datetime.now(timezone.utc).timestamp()) < 600
    assert not list(drift_runs["state"].parent.glob(".latest.json.*")), "no temporary file left behind"

    workspace = drift_runs["workspace"]
    projects = [read_json(p) | {"dir": p.parent} for p in workspace.glob("*/metadata.json")]
    assert [p["name"] for p in projects] == [MODEL], "one project per model, reused by the second run"
    assert len(list((projects[0]["dir"] / "snapshots").glob("*.json"))) == 2
    dashboard = read_json(projects[0]["dir"] / "dashboard.json")
    # The last-run text, the share chart, and the 8 columns in two charts of 4 (plus the threshold line).
    assert [p["title"].split(":")[0].split(" (")[0] for p in dashboard["panels"]] == [
        "Share of drifted columns", "Share of drifted columns", "Drift score per column", "Drift score per column"]
    assert [len(p["values"]) for p in dashboard["panels"]] == [0, 2, 5, 5]
    assert len(dashboard["tabs"]) == 1 and dashboard["tabs"][0]["panels"] == [p["id"] for p in dashboard["panels"]]
    assert dashboard["panels"][0]["title"] == "Share of drifted columns (last run): 0", "rewritten by the last run"
    summaries = drift_runs["summaries"]
    assert [read_json(summaries[k])["workspace_runs"] for k in ("shifted", "normal")] == [1, 2]


def test_each_run_keeps_its_report_and_latest_links_to_the_newest(drift_runs):
    out = drift_runs["out"]
    first, second = (read_json(drift_runs["summaries"][k]) for k in ("shifted", "normal"))
    reports = sorted(out.glob(f"{MODEL}_drift_2*.html"))
    assert [p.name for p in reports] == sorted([Path(first["report_html"]).name, Path(second["report_html"]).name])
    assert len(set(reports)) == 2 and len(list(out.glob(f"{MODEL}_drift_2*.json"))) == 2, "nothing overwritten"
    assert re.fullmatch(rf"{MODEL}_drift_\d{{8}}T\d{{6}}Z(-\d+)?\.html", reports[0].name)
    latest_html, latest_json = out / f"{MODEL}_drift_latest.html", out / f"{MODEL}_drift_latest.json"
    assert latest_html.is_symlink() and not Path(os.readlink(latest_html)).is_absolute()
    assert latest_html.resolve() == Path(second["report_html"]).resolve()
    assert latest_json.resolve() == drift_runs["summaries"]["normal"].resolve()
    assert read_json(latest_json)["dataset_drift"] is False
    assert f"(latest: {latest_html})" in drift_runs["normal"].stdout


def test_run_files_never_reuse_a_name_and_latest_links_are_replaced(tmp_path):
    moment = datetime(2026, 11, 23, 16, 5, 9, tzinfo=timezone.utc)
    first = drift.run_files(tmp_path, MODEL, moment)
    assert first.html.name == f"{MODEL}_drift_20261123T160509Z.html"
    first.html.write_text("one")
    second = drift.run_files(tmp_path, MODEL, moment)  # a second run within the same second
    assert second.html.name == f"{MODEL}_drift_20261123T160509Z-2.html"
    second.html.write_text("two")
    drift.link_latest(first.html, first.latest_html)
    drift.link_latest(second.html, second.latest_html)
    assert first.latest_html.read_text() == "two" and first.html.read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.html.name, second.html.name,
                                                                 first.latest_html.name])


# ------------------------------------------------------------------- drift: the dashboard in a real browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's; .ci/run installs them

# Per chart card of the Evidently UI (MUI X charts): title, text, line colours and paths, legend, y-axis ticks.
CARDS_JS = """
return [...document.querySelectorAll('.MuiCard-root')].map(card => ({
  title: card.querySelector('h5')?.textContent ?? '',
  text: card.innerText,
  lines: [...card.querySelectorAll('path.MuiLineElement-root')].map(p => ({
    stroke: p.getAttribute('stroke'), d: p.getAttribute('d')})),
  legend: [...card.querySelectorAll('.MuiChartsLegend-series')].map(s => ({
    label: s.querySelector('.MuiChartsLegend-label')?.textContent,
    fill: s.querySelector('.MuiChartsLabelMark-fill')?.getAttribute('fill')})),
  yTicks: [...card.querySelectorAll('.MuiChartsAxis-directionY .MuiChartsAxis-tickContainer')]
    .filter(g => g.textContent !== '')
    .map(g => ({label: g.textContent, y: g.transform.baseVal.consolidate().matrix.f})),
}));
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def project_copy(source: Path, target_root: Path, name: str) -> str:
    """A copy of one workspace's project under a new id and name, into another workspace; returns the id."""
    project = next(p.parent for p in source.glob("*/metadata.json"))
    new_id = str(uuid.uuid4())
    shutil.copytree(project, target_root / new_id)
    metadata = read_json(target_root / new_id / "metadata.json") | {"id": new_id, "name": name}
    (target_root / new_id / "metadata.json").write_text(json.dumps(metadata))
    return new_id


@contextmanager
def dashboard(workspace: Path, log_path: Path) -> Iterator[str]:
    """`make dashboard` on a free port over `workspace`: its URL once it listens; stopped with its process group."""
    port = free_port()
    log = open(log_path, "w")
    process = subprocess.Popen(
        ["make", "-s", "dashboard", f"DASHBOARD_PORT={port}", f"DASHBOARD_WORKSPACE={workspace}"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180  # Evidently's import is slow on a busy machine
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "evidently ui did not listen on DASHBOARD_PORT"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def dashboard_url(drift_runs, tmp_path_factory):
    """`make dashboard` on another port, serving the workspace the two runs wrote, plus a copy of it as it was after
    the first run (as another project), so one UI process shows both the one-run and the two-run dashboards."""
    workspace = tmp_path_factory.mktemp("ui") / "workspace"
    shutil.copytree(drift_runs["workspace"], workspace)
    one_run = project_copy(drift_runs["one_run"], workspace, f"{MODEL} after one run")
    two_runs = read_json(drift_runs["summaries"]["normal"])["project_id"]
    with dashboard(workspace, workspace.parent / "ui.log") as url:
        yield {"url": url, "two_runs": two_runs, "one_run": one_run}


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), f"{path} missing: apt-get install -y chromium chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--window-size=1400,1600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def load_dashboard(browser, url: str, screenshot: Path, lines: int) -> dict[str, dict]:
    """Open a project's dashboard, wait for its charts' lines, save a screenshot; the cards by title prefix."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 120).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "path.MuiLineElement-root")) >= lines
        and "(last run)" in d.find_element(By.TAG_NAME, "body").text
    )
    time.sleep(1)  # the charts' appearing animation
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    cards = browser.execute_script(CARDS_JS)
    return {c["title"]: c for c in cards if c["title"]}


def y_at(card: dict, value: float) -> float:
    """The pixel row of `value` on the card's y-axis, from its two outermost tick labels."""
    ticks = sorted(card["yTicks"], key=lambda t: float(t["label"]))
    low, high = ticks[0], ticks[-1]
    fraction = (value - float(low["label"])) / (float(high["label"]) - float(low["label"]))
    return low["y"] + fraction * (high["y"] - low["y"])


def line_ys(line: dict) -> list[float]:
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", line["d"])]
    return numbers[1::2]


def assert_ticks_are_numbers_in_order(card: dict) -> None:
    labels = [t["label"] for t in sorted(card["yTicks"], key=lambda t: -t["y"])]  # bottom to top
    values = [float(label) for label in labels]
    assert len(values) >= 2 and values == sorted(values) and len(set(values)) == len(values), labels


def assert_line_at(card: dict, legend: str, value: float) -> None:
    position = [item["label"] for item in card["legend"]].index(legend)
    ys = line_ys(card["lines"][position])
    assert ys and all(abs(y - y_at(card, value)) < 1.5 for y in ys), (legend, ys, card["yTicks"])


def test_dashboard_layout_fits_the_ui_palette_for_any_number_of_columns():
    from monitoring.drift.workspace import PALETTE_SIZE, dashboard_panels

    summary = {"drift_share": 0.0, "drift_share_threshold": 0.3, "model": MODEL, "model_version": "v1", "rows": 1000,
               "window": {"description": "the last 24h"}, "generated_at": "now", "dataset_drift": False,
               "drifted_columns": 0, "columns": 3}
    for count in range(1, 21):
        columns = [f"column_{i}" for i in range(count)]
        panels = dashboard_panels(columns, summary, 0.1)
        assert panels[0].title.endswith("(last run): 0") and not panels[0].values
        charts = panels[2:]
        assert all(len(p.values) <= PALETTE_SIZE and p.values[-1].legend == "threshold 0.1" for p in charts)
        assert [v.legend for p in charts for v in p.values[:-1]] == columns, "every column once, in order"
        sizes = [len(p.values) for p in charts]
        assert max(sizes) - min(sizes) <= 1, f"balanced: {sizes}"
    untitled = dashboard_panels(["a", "b"], summary, None)[2]  # p-value tests: no distance threshold to draw
    assert untitled.title == "Drift score per column" and [v.legend for v in untitled.values] == ["a", "b"]


def test_the_drift_dashboard_in_a_real_browser(dashboard_url, browser, drift_runs, tmp_path):
    shifted = read_json(drift_runs["summaries"]["shifted"])
    normal = read_json(drift_runs["summaries"]["normal"])
    assert shifted["drift_share"] > 0.3 and normal["drift_share"] == 0.0

    # Two runs, the last with share 0.0.
    cards = load_dashboard(browser, f"{dashboard_url['url']}/projects/{dashboard_url['two_runs']}",
                           tmp_path / "dashboard.png", lines=2 + 2 * 5)
    last = cards["Share of drifted columns (last run): 0"]
    assert "No dataset drift: 0 of 8 columns drifted" in last["text"] and "no value" not in last["text"]
    share = cards["Share of drifted columns"]
    assert [item["label"] for item in share["legend"]] == ["drift share", "dataset drift at 0.3"]
    assert_ticks_are_numbers_in_order(share)
    assert_line_at(share, "dataset drift at 0.3", 0.3)
    first_y, last_y = line_ys(share["lines"][0])[0], line_ys(share["lines"][0])[-1]
    assert abs(first_y - y_at(share, shifted["drift_share"])) < 1.5 and abs(last_y - y_at(share, 0.0)) < 1.5

    charts = [card for title, card in cards.items() if title.startswith("Drift score per column")]
    assert len(charts) == 2
    plotted = []
    for chart in charts:
        labels = [item["label"] for item in chart["legend"]]
        assert labels[-1] == "threshold 0.1" and len(labels) == 5
        plotted += labels[:-1]
        fills = [item["fill"] for item in chart["legend"]]
        strokes = [line["stroke"] for line in chart["lines"]]
        assert len(set(fills)) == len(fills) and strokes == fills, "no two lines of a chart share a colour"
        assert_ticks_are_numbers_in_order(chart)
        assert_line_at(chart, "threshold 0.1", 0.1)
    assert sorted(plotted) == sorted([*PURCHASE.columns, drift.PREDICTION_COLUMN])

    # One run (the workspace as the first run left it): the y-axis still reads 0.375, not "0".
    cards = load_dashboard(browser, f"{dashboard_url['url']}/projects/{dashboard_url['one_run']}",
                           tmp_path / "dashboard_one_run.png", lines=2 + 2 * 5)
    share = cards["Share of drifted columns"]
    assert_ticks_are_numbers_in_order(share)
    assert_line_at(share, "drift share", shifted["drift_share"])
    assert f"Share of drifted columns (last run): {shifted['drift_share']:.3g}" in cards


# ------------------------------------------------------------------------------ drift: errors and windows


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = drift.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_missing_log_is_a_one_line_error_through_the_cli(trained_store, tmp_path):
    result = run_cli("-m", "monitoring.drift", "--model", MODEL, "--log", str(tmp_path / "none.jsonl"),
                     "--out", str(tmp_path), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "no prediction log at" in result.stderr and "none.jsonl" in result.stderr


def test_unknown_model_is_a_one_line_error_through_the_cli(model, tmp_path):
    log = tmp_path / "log.jsonl"
    write_log(log, model, simulate.draw_traffic(50, seed=1), start=START)
    result = run_cli("-m", "monitoring.drift", "--model", "no_such_model", "--log", str(log),
                     "--out", str(tmp_path), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "unknown model 'no_such_model'" in result.stderr and MODEL in result.stderr


def test_too_few_rows_names_the_minimum_and_the_count(model, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    write_log(log, model, simulate.draw_traffic(150, seed=1), start=START)
    code, _, err = run_main(capsys, "--model", MODEL, "--log", str(log), "--out", str(tmp_path),
                            "--state", str(tmp_path / "state.json"), "--all")
    assert code == 2
    assert "too few rows: 150 logged rows" in err and "at least 1000 needed (--min-rows)" in err
    assert "window the whole log (--all)" in err
    code, _, err = run_main(capsys, "--model", MODEL, "--log", str(log), "--out", str(tmp_path),
                            "--state", str(tmp_path / "state.json"))
    assert code == 2, "the rows are days old: outside the default window"
    assert "too few rows: 0 logged rows" in err and "window the last 24h (the default; --since, --last or --all" in err
    code, _, err = run_main(capsys, "--model", MODEL, "--log", str(log), "--out", str(tmp_path),
                            "--state", str(tmp_path / "state.json"), "--min-rows", "500", "--all")
    assert code == 2 and "at least 500 needed" in err
    assert not (tmp_path / "state.json").exists(), "a refused run writes no state"


def test_rows_of_another_version_are_reported_not_mixed_in(model, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    write_log(log, model, simulate.draw_traffic(1_200, seed=1), start=START, version="v0ld")
    write_log(log, model, simulate.draw_traffic(40, seed=2), start=START, version="v0lder")
    code, _, err = run_main(capsys, "--model", MODEL, "--log", str(log), "--out", str(tmp_path),
                            "--state", str(tmp_path / "state.json"), "--all")
    assert code == 2
    assert f"0 logged rows of {model.tag}" in err
    assert "1240 rows of other versions left out: v0ld (1200 rows), v0lder (40 rows)" in err
    assert f"--model {MODEL}:VERSION" in err


def test_window_reader_counts_torn_batches_reads_an_older_versions_jsonl_and_applies_last_and_since(model, tmp_path):
    log = tmp_path / "prediction_log.jsonl"
    old = simulate.draw_traffic(1_000, seed=1)  # a rotated segment in the JSON lines an older version wrote
    proba = model.predict_proba(old)
    (tmp_path / "prediction_log.jsonl.20261120T000000000000.1").write_bytes(b"".join(
        to_lines(old.iloc[b : b + 100], proba[b : b + 100], model.classify(proba[b : b + 100]), request_id=f"old-{b}",
                 endpoint="/batch_predict", model_name=MODEL, model_version=model.version,
                 ts=(START + timedelta(seconds=b)).isoformat()) for b in range(0, 1_000, 100)))
    write_log(log, model, simulate.draw_traffic(500, seed=2), start=START + timedelta(hours=1), batch_rows=100)
    write_log(log, model, simulate.draw_traffic(70, seed=3), start=START, name="purchase_lr")
    tear(log)

    window = drift.load_window(log, MODEL, model.version)
    assert window.rows == 1_500 and window.skipped_lines == 1 and window.other_versions == {}
    assert window.frame["ts"].is_monotonic_increasing
    assert drift.load_window(log, MODEL, model.version, last=300).rows == 300
    since = drift.load_window(log, MODEL, model.version, since=START + timedelta(minutes=30))
    assert since.rows == 500 and since.bounds()[0] == (START + timedelta(hours=1)).isoformat()
    with pytest.raises(drift.DriftError, match="no prediction log"):
        drift.load_window(tmp_path / "absent.jsonl", MODEL, model.version)


def test_frames_are_typed_from_the_schema_with_the_prediction_as_a_number(model):
    traffic = simulate.draw_traffic(300, seed=4)
    traffic["probability"] = model.predict_proba(traffic)
    reference, current, numerical, categorical = drift.prepare(model.input_schema, model.reference(), traffic)
    assert categorical == ["student_country"]
    assert numerical == [*PURCHASE.numerical, drift.PREDICTION_COLUMN]
    assert list(reference.columns) == list(current.columns) == [*numerical, *categorical]
    assert len(reference) == 5_000 and len(current) == 300
    assert all(current[c].dtype == np.float64 for c in numerical)
    with pytest.raises(drift.DriftError, match="lack column.*minutes_watched"):
        drift.prepare(model.input_schema, model.reference(), traffic.drop(columns="minutes_watched"))
    traffic["courses_started"] = np.nan
    with pytest.raises(drift.DriftError, match="courses_started hold no values"):
        drift.prepare(model.input_schema, model.reference(), traffic)


def test_window_choice_defaults_to_the_last_day():
    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    default = drift.choose_window(now=now)
    assert default.since == now - timedelta(hours=24) and default.last is None
    assert drift.choose_window(last=500, now=now) == drift.WindowChoice(None, 500, "the last 500 rows (--last)")
    assert drift.choose_window(whole_log=True, now=now).since is None
    assert drift.choose_window(since="90m", now=now).since == now - timedelta(minutes=90)
    with pytest.raises(SystemExit):  # --since, --last and --all exclude each other
        drift.build_parser().parse_args(["--model", MODEL, "--all", "--last", "5"])


def test_since_accepts_iso_times_and_durations():
    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    assert drift.parse_since("24h", now) == now - timedelta(hours=24)
    assert drift.parse_since("90m", now) == now - timedelta(minutes=90)
    assert drift.parse_since("2026-11-22T10:00:00", now) == datetime(2026, 11, 22, 10, tzinfo=timezone.utc)
    assert drift.parse_since("2026-11-22T10:00:00Z", now) == datetime(2026, 11, 22, 10, tzinfo=timezone.utc)
    with pytest.raises(drift.DriftError, match="ISO 8601"):
        drift.parse_since("yesterday", now)


def test_state_file_update_is_a_merge(tmp_path):
    path = tmp_path / "drift" / "latest.json"
    drift.update_state(path, "a", {"drift_share": 0.1})
    drift.update_state(path, "b", {"drift_share": 0.5})
    drift.update_state(path, "a", {"drift_share": 0.2})
    assert read_json(path) == {"a": {"drift_share": 0.2}, "b": {"drift_share": 0.5}}
    path.write_text("{torn")
    drift.update_state(path, "c", {"drift_share": 0.0})
    assert read_json(path) == {"c": {"drift_share": 0.0}}
    assert oct(path.stat().st_mode & 0o777) == "0o644"

