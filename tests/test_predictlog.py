"""The prediction log on its own: many writers, rotation, torn lines, a full disk."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from prometheus_client import REGISTRY

from monitoring.logreader import LogReader, read_window
from monitoring.predictlog import (
    BackgroundLog, Maintenance, PredictionLog, iter_records, log_files, read_log, to_lines,
)
from monitoring.retention import RetentionPolicy, enforce
from monitoring.segments import compact, locked
from training.data import generate_purchase

INPUTS = generate_purchase(40, seed=3).drop(columns="purchased")
# PREDICTION_LOG_MODE: both modes promise no loss across rotations, concurrent writers and a flush on close.
MODES = {"sync": PredictionLog, "background": BackgroundLog}


def _writer(path: str, process: int, batches: int, mode: str) -> None:
    # Compaction on, as a server runs: in background mode the first rotation used to kill the writer thread.
    log = MODES[mode](Path(path), max_bytes=200_000, maintenance=Maintenance(retention=None))

    def run(thread: int) -> None:
        for batch in range(batches):
            rows = INPUTS.iloc[: 1 + (batch * 7) % 40]
            ids = [f"p{process}-t{thread}-b{batch}-r{i}" for i in range(len(rows))]
            lines = to_lines(rows, np.full(len(rows), 0.25), np.zeros(len(rows), dtype=int),
                             request_id=ids, endpoint="/predict", model_name="m", model_version="v1")
            log.submit(lambda lines=lines: lines, len(rows))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert log.failures == 0


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_processes_and_threads_lose_nothing_across_rotation(tmp_path, mode):
    path = tmp_path / "log.jsonl"
    batches = 60
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=_writer, args=(str(path), p, batches, mode)) for p in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
        assert p.exitcode == 0
    expected = 4 * 3 * sum(1 + (b * 7) % 40 for b in range(batches))
    stats: dict[str, int] = {}
    frame = read_log(path, stats)
    assert stats["skipped"] == 0, "a torn or interleaved line"
    assert len(frame) == expected and frame["request_id"].is_unique
    assert len(log_files(path)) > 5, "the 200 kB limit should have rotated the log several times"
    assert all(f.stat().st_size < 200_000 + 40 * 1_000 for f in log_files(path))
    assert list(frame.columns[-2:]) == ["probability", "prediction"]
    pd.testing.assert_series_equal(
        frame.loc[frame.request_id == "p0-t0-b0-r0", "student_country"].reset_index(drop=True),
        INPUTS["student_country"].iloc[:1].reset_index(drop=True), check_names=False,
    )


def test_a_torn_last_line_is_isolated_and_counted(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"request_id":"a"}\n{"request_id":"half')
    log = PredictionLog(path, max_bytes=10**6)
    assert log.write(b'{"request_id":"b"}\n')
    stats: dict[str, int] = {}
    assert [r["request_id"] for r in iter_records(path, stats)] == ["a", "b"]
    assert stats["skipped"] == 1


def test_a_full_disk_is_counted_not_raised():
    failures: list[BaseException] = []
    log = PredictionLog(Path("/dev/full"), max_bytes=10**6, on_failure=failures.append)
    assert log.write(b'{"x":1}\n') is False
    assert log.write(b'{"x":2}\n') is False
    assert log.failures == 2 and all(isinstance(f, OSError) for f in failures)


def test_lines_roundtrip_values_and_unicode(tmp_path):
    rows = pd.DataFrame({"student_country": ["Côte d'Ivoire", 'quote"d'], "days_on_platform": [1, 2]})
    lines = to_lines(rows, np.array([0.125, 0.875]), np.array([0, 1]), request_id="r1",
                     endpoint="/batch_predict", model_name="m", model_version="v", routing_key="k")
    path = tmp_path / "log.jsonl"
    PredictionLog(path, 10**6).write(lines)
    frame = read_log(path)
    assert frame["student_country"].tolist() == ["Côte d'Ivoire", 'quote"d']
    assert frame["probability"].tolist() == [0.125, 0.875] and frame["prediction"].tolist() == [0, 1]
    assert set(frame["routing_key"]) == {"k"} and set(frame["request_id"]) == {"r1"}


def _encoder(rows: int, tag: str):
    frame = INPUTS.iloc[:rows]
    ids = [f"{tag}-{i}" for i in range(rows)]
    return lambda: to_lines(frame, np.full(rows, 0.5), np.ones(rows, dtype=int), request_id=ids,
                            endpoint="/batch_predict", model_name="m", model_version="v1")


def test_background_log_writes_everything_by_close(tmp_path):
    path = tmp_path / "log.jsonl"
    log = BackgroundLog(path, max_bytes=10**7, max_pending_rows=10**6)
    for batch in range(200):
        log.submit(_encoder(40, f"b{batch}"), 40)
    log.close()
    frame = read_log(path)
    assert len(frame) == 200 * 40 and frame["request_id"].is_unique


def test_background_log_applies_back_pressure_instead_of_dropping(tmp_path):
    path = tmp_path / "log.jsonl"
    log = BackgroundLog(path, max_bytes=10**7, max_pending_rows=50)
    release = threading.Event()
    log.submit(lambda: (release.wait(10), b'{"request_id":"slow"}\n')[1], 40)  # occupies the writer thread
    log.submit(_encoder(40, "queued"), 40)  # 80 pending > 50: written by the caller, right now
    assert len(read_log(path)) == 40
    release.set()
    log.close()
    assert len(read_log(path)) == 41  # the slow job's line plus the 40 written by the caller, none twice


# ------------------------------------------------------------------ compaction, the reader, several servers


def _lines(rows: int, tag: str, model: str = "m", version: str = "v1", ts: str | None = None) -> bytes:
    frame = INPUTS.iloc[np.arange(rows) % len(INPUTS)]
    return to_lines(frame, np.full(rows, 0.5), np.ones(rows, dtype=int), request_id=[f"{tag}-{i}" for i in range(rows)],
                    endpoint="/batch_predict", model_name=model, model_version=version, ts=ts)


def _compacting_writer(path: str, process: int) -> None:
    log = PredictionLog(Path(path), max_bytes=100_000, maintenance=Maintenance(compact=True, retention=None))
    for batch in range(40):
        assert log.write(_lines(1 + batch % 30, f"p{process}-b{batch}"))
    log.close()  # waits for this process's compactions


def test_rotated_segments_are_compacted_to_parquet_by_the_writer_and_read_back_whole(tmp_path):
    path = tmp_path / "log.jsonl"
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=_compacting_writer, args=(str(path), p)) for p in range(3)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
        assert p.exitcode == 0
    files = log_files(path)
    # The live file comes last, unless the very last write rotated it away (the next write would recreate it).
    rotated = files[:-1] if files[-1] == path else files
    assert path not in rotated and len(rotated) >= 3
    assert all(f.name.endswith(".parquet") for f in rotated), "every rotated segment compacted by its writer"
    assert not list(tmp_path.glob(".*.tmp"))
    expected = 3 * sum(1 + b % 30 for b in range(40))
    stats: dict[str, int] = {}
    frame = read_log(path, stats)
    assert stats["skipped"] == 0 and len(frame) == expected and frame["request_id"].is_unique
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"


def test_compaction_keeps_the_torn_line_count_and_sorts_by_model_and_time(tmp_path):
    segment = tmp_path / "log.jsonl.20261120T080000000000.7"
    segment.write_bytes(_lines(3, "late", model="b", ts="2026-11-20T09:00:00+00:00") + b'{"request_id": "to\n'
                        + _lines(2, "early", model="a", ts="2026-11-20T08:00:00+00:00"))
    compacted = compact(segment)
    assert compacted == tmp_path / (segment.name + ".parquet") and not segment.exists()
    table = pq.read_table(compacted)
    assert table["model_name"].to_pylist() == ["a", "a", "b", "b", "b"]
    assert compact(segment) is None, "a second compactor finds the work done"
    stats: dict[str, int] = {}
    assert len(read_log(tmp_path / "log.jsonl", stats)) == 5 and stats["skipped"] == 1


def test_readers_compact_segments_a_dead_writer_left_and_still_read_the_live_file_as_jsonl(tmp_path):
    path = tmp_path / "log.jsonl"
    (tmp_path / "log.jsonl.20261120T080000000000.7").write_bytes(_lines(10, "rotated"))
    path.write_bytes(_lines(5, "live"))
    reader = LogReader(path)
    assert [f.name for f in reader.files] == ["log.jsonl.20261120T080000000000.7.parquet", "log.jsonl"]
    assert reader.table(["request_id"]).num_rows == 15


def test_a_folder_or_a_glob_of_several_servers_logs_reads_the_fleet(tmp_path):
    shared = tmp_path / "shared"
    for server in ("a", "b", "c"):
        log = PredictionLog(shared / f"prediction_log-{server}.jsonl", max_bytes=20_000,
                            maintenance=Maintenance(retention=None))
        for batch in range(10):
            log.write(_lines(20, f"{server}-{batch}", model="m" if server != "c" else "other"))
        log.close()
    (shared / "notes.txt").write_text("not a log")
    assert len(read_log(shared)) == 600
    assert len(read_log(shared / "prediction_log-[ab].jsonl")) == 400
    assert len(read_log(str(tmp_path / "*" / "prediction_log-a.jsonl"))) == 200
    window = read_window(shared, "m", "v1", ["ts", "request_id", "minutes_watched"])
    assert window.rows == 400 and {r.split("-")[0] for r in window.frame["request_id"]} == {"a", "b"}
    assert window.frame["ts"].is_monotonic_increasing and not window.sampled


def test_the_window_is_a_seeded_uniform_sample_when_larger_than_max_rows(tmp_path):
    path = tmp_path / "log.jsonl"
    log = PredictionLog(path, max_bytes=50_000, maintenance=Maintenance(retention=None))
    for batch in range(30):
        log.write(_lines(100, f"b{batch}", ts=f"2026-11-20T08:{batch:02d}:00+00:00"))
    log.write(_lines(50, "old", version="v0"))
    log.close()
    columns = ["ts", "request_id", "probability"]
    full = read_window(path, "m", "v1", columns, max_rows=None)
    sample = read_window(path, "m", "v1", columns, max_rows=500, seed=7)
    assert full.rows == sample.rows == 3_000 and len(full.frame) == 3_000 and len(sample.frame) == 500
    assert sample.sampled and sample.seed == 7 and full.other_versions == {"v0": 50}
    assert set(sample.frame["request_id"]) <= set(full.frame["request_id"]) and sample.frame["request_id"].is_unique
    again = read_window(path, "m", "v1", columns, max_rows=500, seed=7)
    assert again.frame["request_id"].tolist() == sample.frame["request_id"].tolist()
    batches = sample.frame["request_id"].str.split("-").str[0].value_counts()
    assert len(batches) == 30 and batches.max() < 40, "drawn from every part of the window, not its head"
    last = read_window(path, "m", "v1", columns, last=250, max_rows=100)
    assert last.rows == 250 and len(last.frame) == 100
    assert last.frame["ts"].min() >= pd.Timestamp("2026-11-20T08:27:00Z")
    since = read_window(path, "m", "v1", columns, since=datetime(2026, 11, 20, 8, 20, tzinfo=timezone.utc))
    assert since.rows == 1_000


# ------------------------------------------------------------------------------------------------- retention


def _size(file: Path) -> int:
    # The other writer's retention may delete a segment between listing and stat: a deleted file holds no bytes.
    try:
        return file.stat().st_size
    except FileNotFoundError:
        return 0


def _fill(path: str, process: int, batches: int) -> None:
    policy = RetentionPolicy(max_age_days=30, max_total_bytes=400_000)
    log = PredictionLog(Path(path), max_bytes=40_000, maintenance=Maintenance(retention=policy))
    for batch in range(batches):
        log.write(_lines(25, f"p{process}-b{batch}"))
        total = sum(_size(f) for f in log_files(Path(path)))
        # The live file may grow past its rotation size by one batch, and another process's rotation may not have
        # been enforced yet: the bound plus one segment per writer.
        assert total <= 400_000 + 2 * 60_000, total
    log.close()


def test_retention_holds_the_byte_bound_under_a_write_load_that_crosses_it(tmp_path):
    path = tmp_path / "log.jsonl"
    deleted_before = REGISTRY.get_sample_value("serving_prediction_log_segments_deleted_total", {"reason": "size"}) or 0
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=_fill, args=(str(path), p, 150)) for p in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=180)
        assert p.exitcode == 0
    written = 2 * 150 * len(_lines(25, "p0-b000"))
    assert written > 3 * 400_000, "the load crosses the bound several times over"
    result = enforce(path, RetentionPolicy(30, 400_000))
    # The live file exists unless the very last write rotated it away (the next write recreates it); either way
    # retention never deleted it and the newest lines are on disk.
    assert result.bytes_on_disk <= 400_000 and path not in [segment for segment, _ in result.deleted]
    newest = read_log(path)
    assert newest["request_id"].str.endswith("b149-24").any(), "the newest lines are kept, the oldest went"
    assert not newest["request_id"].str.startswith("p0-b0-").any()
    log = PredictionLog(path, max_bytes=1_000, maintenance=Maintenance(compact=False,
                                                                      retention=RetentionPolicy(30, 2_000)))
    log.write(_lines(20, "in-process"))  # crosses both limits in this process: the metrics move
    assert REGISTRY.get_sample_value("serving_prediction_log_segments_deleted_total", {"reason": "size"}) > deleted_before
    assert REGISTRY.get_sample_value("serving_prediction_log_bytes") <= 2_000 + 1_000 + len(_lines(20, "x"))


def test_retention_deletes_old_segments_but_never_the_live_one_nor_one_a_reader_holds(tmp_path):
    path = tmp_path / "log.jsonl"
    old = [tmp_path / f"log.jsonl.2026110{d}T000000000000.1.parquet" for d in (1, 2, 3)]
    for file in old:
        file.write_bytes(b"x" * 100)
        os.utime(file, (time.time() - 40 * 86_400,) * 2)
    path.write_bytes(b"y" * 100)
    os.utime(path, (time.time() - 40 * 86_400,) * 2)
    with locked(old[1]):  # a reader is reading this one
        result = enforce(path, RetentionPolicy(max_age_days=30, max_total_bytes=10**9))
    assert [p for p, _ in result.deleted] == [old[0], old[2]] and {r for _, r in result.deleted} == {"age"}
    assert result.kept_held == [old[1]] and old[1].exists() and path.exists()
    assert enforce(path, RetentionPolicy(30, 10**9)).deleted == [(old[1], "age")], "deleted once released"


def test_default_paths_live_in_the_state_folder_whatever_the_working_directory(tmp_path, monkeypatch):
    from settings import Settings

    for name in ("PREDICTION_LOG_PATH", "DRIFT_STATE_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PREDICTION_LOG_RETENTION", "7")
    monkeypatch.setenv("PREDICTION_LOG_MAX_TOTAL_BYTES", "5000000")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.prediction_log_path == tmp_path / "state" / "prediction_log.jsonl"
    assert settings.drift_state_path == tmp_path / "state" / "drift" / "latest.json"
    log = PredictionLog.from_settings(settings)
    assert log.maintenance == Maintenance(compact=True, retention=RetentionPolicy(7.0, 5_000_000))
    log.close()
    monkeypatch.setenv("PREDICTION_LOG_PATH", str(tmp_path / "mine.jsonl"))
    assert Settings().prediction_log_path == tmp_path / "mine.jsonl", "an explicit path still overrides"
    monkeypatch.delenv("STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Settings().drift_state_path == tmp_path / "xdg" / "purchase_serving" / "drift" / "latest.json"
