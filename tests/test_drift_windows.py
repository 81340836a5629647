"""The drift verdict's recent windows and its exit codes through make, on the case a new user tripped on: a day of
normal traffic, then fresh shifted traffic (`make simulate SIM_ARGS=--shift`), which the 24 h window alone
averaged away ("OK" over 17,423 rows, `minutes_watched` at 0.0988 against 0.1)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from monitoring import simulate
from tests.conftest import ROOT, run_cli
from tests.test_drift import MODEL, summary_path, write_log

NORMAL_ROWS = 24_000
SHIFTED_ROWS = 3_000  # 11% of the day: every column's score stays under its threshold over the whole day


@pytest.fixture(scope="module")
def fresh_shift(trained_store, tmp_path_factory):
    """A day's log: 24,000 training-like rows spread over the last 20 hours, then 3,000 shifted rows in the last
    half hour."""
    from training.store import load_model

    model = load_model(f"{MODEL}:latest")
    folder = tmp_path_factory.mktemp("fresh-shift")
    log = folder / "prediction_log.jsonl"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    normal = simulate.draw_traffic(NORMAL_ROWS, seed=31)
    hours = 12
    for hour in range(hours):
        part = normal.iloc[hour * len(normal) // hours:(hour + 1) * len(normal) // hours]
        write_log(log, model, part, start=now - timedelta(hours=20 - hour))
    write_log(log, model, simulate.draw_traffic(SHIFTED_ROWS, seed=32, shift=True), start=now - timedelta(minutes=30))
    return model, folder, log


def _make_drift(folder, log, *args: str, status: str = "status.json") -> subprocess.CompletedProcess:
    """`make drift` as CI runs it, with the status file that keeps the job's own exit code."""
    drift_args = " ".join(["--log", str(log), "--out", str(folder / "out"), "--state", str(folder / "state.json"),
                           "--workspace", str(folder / "workspace"), *args])
    return subprocess.run(["make", "-s", "drift", f"DRIFT_MODEL={MODEL}", f"DRIFT_ARGS={drift_args}",
                           f"DRIFT_STATUS={folder / status}"], cwd=ROOT, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=900)


def test_a_fresh_shift_fires_in_the_recent_windows_and_make_keeps_the_exit_code(fresh_shift):
    model, folder, log = fresh_shift
    result = _make_drift(folder, log, "--fail-on-drift")
    assert result.returncode == 2, result.stdout + result.stderr  # make's own code for any failing recipe
    status = json.loads((folder / "status.json").read_text())
    assert status["exit_code"] == 1 and status["meaning"] == "drift found (--fail-on-drift)", status
    assert status["level"] == "drift" and status["error"] is None

    summary = json.loads(summary_path(result.stdout).read_text())
    main, by_time, by_rows = summary["windows"]
    assert main["name"] == "main" and main["rows"] == NORMAL_ROWS + SHIFTED_ROWS
    assert main["verdict"]["level"] == "ok", main  # the day alone averages the shift away
    assert by_time["rows"] == SHIFTED_ROWS and by_time["description"] == "the last 1h (--recent-since)"
    assert by_rows["rows"] == 5_000 and by_rows["description"] == "the last 5000 rows (--recent-rows)"
    assert all(f["score"] < f["threshold"] for f in summary["features"].values())  # the table is the day's
    for window in (by_time, by_rows):
        assert window["verdict"]["level"] == "drift" and "minutes_watched" in window["drifted_columns"], window
    assert summary["verdict"]["level"] == "drift"
    assert summary["verdict"]["windows"] == ["recent_time", "recent_rows"] == status["windows"]
    assert summary["verdict"]["message"].startswith("in the last 1h (--recent-since): ")
    assert status["summary"] == str(summary_path(result.stdout))
    lines = result.stdout.splitlines()
    assert any(line.startswith("  the last 1h (--recent-since)") and " DRIFT" in line for line in lines), lines
    assert any(line.startswith("verdict: DRIFT: in the last 1h") for line in lines), result.stdout
    state = json.loads((folder / "state.json").read_text())[MODEL]
    assert state["level"] == "drift"  # what the gauges show


def test_without_recent_windows_the_day_alone_says_ok(fresh_shift):
    model, folder, log = fresh_shift
    result = run_cli("-m", "monitoring.drift", "--model", MODEL, "--log", str(log), "--out", str(folder / "alone"),
                     "--state", str(folder / "alone.json"), "--workspace", str(folder / "alone-ws"),
                     "--fail-on-drift", "--no-recent", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(summary_path(result.stdout).read_text())
    assert [w["name"] for w in summary["windows"]] == ["main"] and summary["verdict"]["level"] == "ok"


def test_a_job_that_cannot_run_is_told_apart_from_drift_through_make(fresh_shift, tmp_path):
    _, folder, _ = fresh_shift
    result = _make_drift(folder, tmp_path / "missing.jsonl", "--fail-on-drift", status="failed.json")
    assert result.returncode == 2
    status = json.loads((folder / "failed.json").read_text())
    assert status["exit_code"] == 2 and status["meaning"] == "the job could not run"
    assert "no prediction log at" in status["error"] and status["level"] is None

    result = _make_drift(folder, tmp_path / "missing.jsonl", "--recent-rows", "0", status="usage.json")
    assert result.returncode == 2 and "--recent-rows must be at least 1" in result.stderr
    assert json.loads((folder / "usage.json").read_text())["exit_code"] == 2


def test_small_recent_windows_are_skipped_with_the_reason(fresh_shift):
    model, folder, log = fresh_shift
    result = run_cli("-m", "monitoring.drift", "--model", MODEL, "--log", str(log), "--out", str(folder / "small"),
                     "--state", str(folder / "small.json"), "--workspace", str(folder / "small-ws"),
                     "--last", "3000", "--recent-since", "1m", check=False)
    assert result.returncode == 0, result.stderr
    summary = json.loads(summary_path(result.stdout).read_text())
    _, by_time, by_rows = summary["windows"]
    assert by_time["verdict"] is None and by_time["skipped"].startswith("too few rows (0 < --min-rows 1000)")
    assert by_rows["verdict"] is None and by_rows["skipped"] == "the same rows as the main window"
    assert summary["verdict"]["level"] == "drift" and summary["verdict"]["windows"] == ["main"]
