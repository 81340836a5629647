"""The drift job's Spark engine against the local one, on one small fleet log, with a real Spark (`local[2]`).

One Spark session serves the module; the log is two servers' logs in one folder, each upgraded from a version that
wrote JSON lines to one that writes Arrow segments: Parquet segments compacted from JSONL (one holding a torn line,
one whose float column was logged as whole numbers, so its Parquet type is int64), a rotated JSONL segment nobody
compacted (Spark reads it as JSON), the old versions' live JSONL files (one with a torn last line), then an Arrow
segment whose writer was killed mid-batch and an Arrow segment still being written (the driver reads both); rows
of an old version and of another model. The local engine compacts what it reads, so it reads a copy made before
any read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring import drift, simulate
from monitoring.logreader import LogMissing, read_window
from monitoring.compaction import compact
from monitoring.predictlog import PredictionLog
from tests.conftest import ROOT, run_cli
from tests.logfiles import batch, tear, to_lines

spark_window = pytest.importorskip("monitoring.spark_window")

MODEL = "purchase_gbm"
START = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
BATCH = 50  # rows per logged batch; every batch of the fleet has its own second, so --last N cuts between batches
TORN = b'{"ts": "2026-11-22T10:00:00+00:00", "request_id": "torn", "model_name": "purchase_gbm", "student_coun'
CURRENT_ROWS = 1_000 + 800 + 500 + 600 + 800 + 500 + 400 + 300  # the fleet's rows of the model's current version
# A torn line in a compacted segment, in the rotated JSONL segment and at the end of a live JSONL file, and the torn
# batch at the end of the Arrow segment whose writer was killed.
SKIPPED = 4
# A small log: two shuffle partitions instead of Spark's 200 keep each query well under a second.
TEST_CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}
SPARK_CONF = ("--spark-master", "local[2]", *(a for k, v in TEST_CONF.items() for a in ("--spark-conf", f"{k}={v}")))


class Clock:
    """One second per batch, fleet-wide."""

    def __init__(self) -> None:
        self.batches = 0

    def next(self) -> datetime:
        self.batches += 1
        return START + timedelta(seconds=self.batches)


def lines(model, clock: Clock, rows: int, seed: int, *, version: str | None = None, whole: bool = False,
          other=None) -> bytes:
    """The model's real predictions on drawn traffic, as the writer logs them, a batch per second."""
    scorer = other or model
    frame = simulate.draw_traffic(rows, seed=seed)
    if whole:  # a client that sends whole minutes: the segment's Parquet column becomes int64
        frame["minutes_watched"] = frame["minutes_watched"].round().astype("int64")
    out = []
    for begin in range(0, rows, BATCH):
        part = frame.iloc[begin : begin + BATCH]
        proba = scorer.predict_proba(part)
        out.append(to_lines(part, proba, scorer.classify(proba), request_id=f"r{seed}-{begin}",
                            endpoint="/batch_predict", model_name=scorer.name,
                            model_version=version or scorer.version, ts=clock.next().isoformat()))
    return b"".join(out)


def append(log: PredictionLog, model, clock: Clock, rows: int, seed: int) -> None:
    """The same through the Arrow writer."""
    frame = simulate.draw_traffic(rows, seed=seed)
    for begin in range(0, rows, BATCH):
        part = frame.iloc[begin : begin + BATCH]
        proba = model.predict_proba(part)
        assert log.append(batch(part, proba, model.classify(proba), request_id=f"r{seed}-{begin}",
                                model_name=model.name, model_version=model.version, ts=clock.next()))


def rotated(folder: Path, live: str, number: int) -> Path:
    return folder / f"{live}.20261120T0800000000{number:02d}.1"


@pytest.fixture(scope="module")
def fleet(trained_store, tmp_path_factory):
    from training.store import load_model

    model = load_model(f"{MODEL}:latest")
    other = load_model("purchase_lr:latest")
    folder = tmp_path_factory.mktemp("fleet") / "predlog"
    folder.mkdir()
    clock = Clock()
    a, b = "prediction_log-a.jsonl", "prediction_log-b.jsonl"
    rotated(folder, a, 1).write_bytes(lines(model, clock, 1_000, 1))
    rotated(folder, b, 1).write_bytes(lines(model, clock, 800, 2, whole=True))
    rotated(folder, a, 2).write_bytes(lines(model, clock, 800, 3) + TORN + b"\n"
                                      + lines(model, clock, 200, 4, version="0ld"))
    for path in sorted(folder.iterdir()):
        assert compact(path) is not None
    rotated(folder, a, 3).write_bytes(lines(model, clock, 300, 5) + TORN + b"\n" + lines(model, clock, 200, 6))
    since = START + timedelta(seconds=clock.batches + 1)  # the live segments' rows only
    (folder / a).write_bytes(lines(model, clock, 600, 7) + TORN)
    (folder / b).write_bytes(lines(model, clock, 500, 8) + lines(model, clock, 300, 9, other=other))
    killed = PredictionLog(folder / a, max_bytes=1 << 30)
    append(killed, model, clock, 400, 10)
    killed.close()
    tear(folder / a)
    live = PredictionLog(folder / b, max_bytes=1 << 30)  # written by this process until the module ends
    append(live, model, clock, 300, 11)
    copy = folder.parent / "copy"
    shutil.copytree(folder, copy)  # for the local engine, which compacts the sealed segments it reads
    yield {"model": model, "spark_log": folder, "local_log": copy, "since": since, "live_rows": 600 + 500 + 400 + 300}
    live.close()


@pytest.fixture(scope="module")
def spark():
    session = spark_window.open_session("local[2]", TEST_CONF)
    yield session
    session.stop()


def columns(model) -> list[str]:
    return ["ts", "model_version", *model.input_schema["columns"], "probability"]


def both(spark, fleet, **window):
    model = fleet["model"]
    types = {c: s["type"] for c, s in model.input_schema["columns"].items()}
    on_spark = spark_window.read_window(spark, fleet["spark_log"], model.name, model.version, columns(model), types,
                                        **window)
    local = read_window(fleet["local_log"], model.name, model.version, columns(model), **window)
    return on_spark, local


@pytest.fixture(scope="module")
def whole(spark, fleet):
    return both(spark, fleet, max_rows=None)


def rows_sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def test_the_fleet_log_has_every_kind_of_segment(spark, fleet):
    files = spark_window.list_log(spark, fleet["spark_log"])
    assert len(files.parquet) == 3 and len(files.jsonl) == 3, "three compacted, one rotated JSONL, two live"
    assert len(files.streams) == 2 and not files.by_url, "a killed writer's Arrow segment and a live one"
    assert sorted(s.skipped for s in files.parquet) == [0, 0, 1]
    kinds = {s.types["minutes_watched"].simpleString() for s in files.parquet}
    assert kinds == {"bigint", "double"}, "one segment holds the float column as int64"
    assert sum(u.endswith(".1") for u in files.jsonl) == 1, "the rotated JSONL segment is read as JSON"


def test_the_whole_window_is_the_same_rows_on_both_engines(whole, fleet):
    on_spark, local = whole
    assert on_spark.rows == local.rows == CURRENT_ROWS
    assert on_spark.other_versions == local.other_versions == {"0ld": 200}, "purchase_lr's rows are another model"
    assert on_spark.skipped_lines == local.skipped_lines == SKIPPED
    assert on_spark.segments == local.segments == 8
    assert not on_spark.sampled and not local.sampled
    assert list(on_spark.frame.columns) == list(local.frame.columns) == columns(fleet["model"])
    assert dict(on_spark.frame.dtypes) == dict(local.frame.dtypes)
    assert str(on_spark.frame["ts"].dtype) == "datetime64[ns, UTC]" and on_spark.frame["ts"].is_monotonic_increasing
    assert on_spark.frame["minutes_watched"].dtype == np.float64, "the int64 segment is widened like pyarrow does"
    pd.testing.assert_frame_equal(rows_sorted(on_spark.frame), rows_sorted(local.frame))
    _, current, _, _ = drift.prepare(fleet["model"].input_schema, fleet["model"].reference(), on_spark.frame)
    assert len(current) == CURRENT_ROWS and current.notna().all().all()


def bounds(read) -> tuple[str, str]:
    return read.frame["ts"].min().isoformat(), read.frame["ts"].max().isoformat()


def test_since_and_last_cut_the_same_window(spark, fleet):
    on_spark, local = both(spark, fleet, since=fleet["since"], max_rows=None)
    assert on_spark.rows == local.rows == fleet["live_rows"]
    assert bounds(on_spark) == bounds(local) and bounds(on_spark)[0] == fleet["since"].isoformat()
    assert on_spark.other_versions == local.other_versions == {}
    assert on_spark.skipped_lines == local.skipped_lines == SKIPPED, "torn lines of every segment read"
    pd.testing.assert_frame_equal(rows_sorted(on_spark.frame), rows_sorted(local.frame))

    on_spark, local = both(spark, fleet, last=1_000, max_rows=None)
    assert on_spark.rows == local.rows == len(on_spark.frame) == 1_000
    assert bounds(on_spark) == bounds(local)
    pd.testing.assert_frame_equal(rows_sorted(on_spark.frame), rows_sorted(local.frame))
    assert both(spark, fleet, last=CURRENT_ROWS + 50, max_rows=None)[0].rows == CURRENT_ROWS


def test_a_window_over_max_rows_is_an_exact_seeded_uniform_sample(spark, fleet, whole):
    on_spark, local = both(spark, fleet, max_rows=1_000, seed=3)
    assert on_spark.rows == local.rows == CURRENT_ROWS
    assert len(on_spark.frame) == len(local.frame) == 1_000
    assert on_spark.sampled and local.sampled and on_spark.seed == 3 and on_spark.max_rows == 1_000
    assert on_spark.frame["ts"].is_monotonic_increasing
    assert len(on_spark.frame.merge(whole[1].frame, how="inner")) == 1_000, "every sampled row is a row of the window"
    again = both(spark, fleet, max_rows=1_000, seed=3)[0]
    pd.testing.assert_frame_equal(again.frame, on_spark.frame)
    other = both(spark, fleet, max_rows=1_000, seed=4)[0]
    assert not other.frame.equals(on_spark.frame)
    # Uniform: the sample's share of the newest rows is the window's (1,800 of 4,900), within 4 sigma.
    late = (on_spark.frame["ts"] >= pd.Timestamp(fleet["since"])).mean()
    share = fleet["live_rows"] / CURRENT_ROWS
    assert abs(late - share) < 4 * np.sqrt(share * (1 - share) / 1_000)

    on_spark, local = both(spark, fleet, last=2_000, max_rows=1_500)
    assert on_spark.rows == local.rows == 2_000 and len(on_spark.frame) == len(local.frame) == 1_500
    cut = whole[1].frame["ts"].iloc[-2_000]
    assert on_spark.frame["ts"].min() >= cut, "sampled from the last 2,000 rows only"


def test_urls_and_globs_list_the_same_log(spark, fleet):
    model, folder = fleet["model"], fleet["spark_log"]
    types = {c: s["type"] for c, s in model.input_schema["columns"].items()}
    server_a = 1_000 + 800 + 500 + 600 + 400
    sources = ((folder.as_uri(), CURRENT_ROWS), (f"{folder.as_uri()}/prediction_log-*.jsonl", CURRENT_ROWS),
               (str(folder / "*-a.jsonl"), server_a), (f"{folder.as_uri()}/*-a.jsonl", server_a))
    for source, expected in sources:
        read = spark_window.read_window(spark, source, model.name, model.version, columns(model), types,
                                        max_rows=None)
        assert read.rows == expected, source
        assert read.skipped_lines == SKIPPED and read.other_versions == {"0ld": 200}, source
    spaced = folder.parent / "pred log"  # a local path is handed to Hadoop as a file: URI, unescaped
    shutil.copytree(folder, spaced)
    assert spark_window.read_window(spark, spaced, model.name, model.version, columns(model), types).rows == CURRENT_ROWS
    one = spark_window.read_window(spark, (folder / "prediction_log-b.jsonl").as_uri(), model.name, model.version,
                                   columns(model), types)
    assert one.rows == 800 + 500 + 300 and one.segments == 3, "a log's URL names its segments too"
    with pytest.raises(LogMissing):
        spark_window.read_window(spark, (folder / "absent").as_uri(), model.name, model.version, columns(model))


def summary_of(stdout: str) -> dict:
    line = next(line for line in stdout.splitlines() if line.startswith("summary "))
    return json.loads(Path(line.split()[1]).read_text())


def test_the_cli_on_spark_gives_the_local_verdict_and_scores(fleet, tmp_path, capsys):
    common = ["--model", MODEL, "--all", "--max-rows", "10000"]
    spark_run = subprocess.Popen(
        [sys.executable, "-m", "monitoring.drift", *common, "--log", str(fleet["spark_log"]), "--out",
         str(tmp_path / "spark"), "--state", str(tmp_path / "spark.json"), "--engine", "spark", *SPARK_CONF],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # meanwhile the local engine runs here: the two Evidently imports overlap
    try:
        code = drift.main([*common, "--log", str(fleet["local_log"]), "--out", str(tmp_path / "local"),
                           "--state", str(tmp_path / "local.json")])
        local = summary_of(capsys.readouterr().out)
        stdout, stderr = spark_run.communicate(timeout=300)
    finally:
        spark_run.kill()
    assert spark_run.returncode == code == 0, stderr
    on_spark = summary_of(stdout)
    assert on_spark["engine"] == "spark" and on_spark["spark_master"] == "local[2]" and local["engine"] == "local"
    for key in ("rows", "lines_skipped", "other_versions", "sample", "columns", "drifted_columns", "dataset_drift"):
        assert on_spark[key] == local[key], key
    assert on_spark["rows"] == CURRENT_ROWS and on_spark["lines_skipped"] == SKIPPED
    assert on_spark["window"] == local["window"]
    assert on_spark["verdict"]["level"] == local["verdict"]["level"]
    assert set(on_spark["features"]) == set(local["features"]) and len(local["features"]) == 8
    for column, feature in local["features"].items():
        assert abs(on_spark["features"][column]["score"] - feature["score"]) < 0.02, column
        assert on_spark["features"][column]["drifted"] == feature["drifted"], column
    assert f"{SKIPPED} unparseable log line(s) skipped" in stdout
    assert "Traceback" not in stderr


def test_errors_are_one_line_before_spark_starts(fleet, tmp_path, capsys):
    def error_of(*args: str) -> str:
        assert drift.main(["--model", MODEL, "--all", "--out", str(tmp_path), *args]) == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and "Traceback" not in err
        return err

    url = fleet["spark_log"].as_uri()
    assert "a URL is read by the Spark engine only (pass --engine spark)" in error_of("--log", url)
    assert "no prediction log at" in error_of("--log", str(tmp_path / "none.jsonl"), "--engine", "spark")
    # pyspark absent (a subprocess: this one has pyspark loaded): its import fails as without the `spark` extra.
    absent = ("import sys; sys.modules['pyspark'] = None; from monitoring.drift.cli import main; "
              f"sys.exit(main(['--model', '{MODEL}', '--log', {str(fleet['spark_log'])!r}, '--all', "
              f"'--out', {str(tmp_path)!r}, '--state', {str(tmp_path / 'state.json')!r}, '--engine', 'spark']))")
    result = run_cli("-c", absent, check=False)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "--engine spark needs pyspark: pip install '.[spark]'" in result.stderr
