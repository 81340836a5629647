"""The prediction log on its own: many writers in both modes, rotation, torn batches, failed writes, compaction,
retention, the maintenance process, and logs in the JSON-lines format of older versions."""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest
from prometheus_client import REGISTRY

from monitoring.compaction import compact
from monitoring.jsonlog import JsonlLog
from monitoring.logbatch import LogBatch, encode
from monitoring.logreader import LogReader, read_window
from monitoring.maintenance import INTERVAL_S, Maintenance, election_lock, run_pass
from monitoring.maintenance import main as maintenance_main
from monitoring.predictlog import BackgroundLog, PredictionLog, iter_records, log_files, read_log
from monitoring.retention import RetentionPolicy, enforce
from monitoring.segments import is_compacted, is_stream, locked
from tests.logfiles import batch, tear, to_lines
from training.data import generate_purchase

INPUTS = generate_purchase(40, seed=3).drop(columns="purchased")
# PREDICTION_LOG_MODE: both modes promise no loss across rotations, concurrent writers, readers, retention,
# compaction and a flush on close; only `sync` promises the rows are on disk when `append` returns.
MODES = {"sync": PredictionLog, "background": BackgroundLog}
NO_RETENTION = Maintenance(retention=None)  # compaction when the log closes, as a batch job's


def rows_of(count: int, tag: str, model: str = "m", version: str = "v1", ts: datetime | None = None):
    frame = INPUTS.iloc[np.arange(count) % len(INPUTS)]
    return batch(frame, np.full(count, 0.5), np.ones(count, dtype=int), model_name=model, model_version=version,
                 request_id=[f"{tag}-{i}" for i in range(count)], ts=ts)


def _writer(path: str, process: int, batches: int, mode: str) -> None:
    log = MODES[mode](Path(path), max_bytes=100_000, maintenance=NO_RETENTION)

    def run(thread: int) -> None:
        for number in range(batches):
            log.append(rows_of(1 + (number * 7) % 40, f"p{process}-t{thread}-b{number}"))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert log.failures == 0


def _run_processes(target, args_list, timeout: float = 120) -> None:
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=target, args=args) for args in args_list]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=timeout)
        assert p.exitcode == 0


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_processes_and_threads_lose_nothing_across_rotation(tmp_path, mode):
    path = tmp_path / "log.jsonl"
    batches = 60
    _run_processes(_writer, [(str(path), p, batches, mode) for p in range(4)])
    expected = 4 * 3 * sum(1 + (b * 7) % 40 for b in range(batches))
    stats: dict[str, int] = {}
    frame = read_log(path, stats)
    assert stats["skipped"] == 0, "a torn or interleaved batch"
    assert len(frame) == expected and frame["request_id"].is_unique
    files = log_files(path)
    assert len(files) > 4 * 5, "each process rotated its 100 kB segments several times"
    assert all(is_compacted(f) for f in files), "every sealed segment compacted when its writer closed"
    assert list(frame.columns[-2:]) == ["probability", "prediction"]
    first = frame.loc[frame.request_id == "p0-t0-b0-0"]
    assert first["student_country"].tolist() == INPUTS["student_country"].iloc[:1].tolist()


def test_values_types_and_unicode_round_trip(tmp_path):
    rows = pd.DataFrame({"student_country": ["Côte d'Ivoire", 'quote"d', "🎓"], "days_on_platform": np.array([1, 2, 3], dtype=np.int32),
                         "minutes_watched": np.array([0.5, 2.0, 1.25], dtype=np.float32)})
    ts = datetime(2026, 11, 20, 8, 0, 0, 123456, tzinfo=timezone.utc)
    path = tmp_path / "log.jsonl"
    log = PredictionLog(path, 10**6)
    assert log.append(batch(rows, [0.125, 0.875, 0.5], [0, 1, 1], request_id=["a", "b", "c"], routing_key=["k", None, "k"],
                            ts=ts, ids=["i1", "i2", "i3"], alias="purchase@production", variant="gbm", shadow=True,
                            row_keys={"serial_number": [10, 11, 12]}))
    frame = read_log(path)
    assert frame["student_country"].tolist() == ["Côte d'Ivoire", 'quote"d', "🎓"]
    assert frame["days_on_platform"].dtype == np.int64, "integers are logged as int64 whatever the door's width"
    assert frame["minutes_watched"].dtype == np.float64 and frame["minutes_watched"].tolist() == [0.5, 2.0, 1.25]
    assert frame["probability"].tolist() == [0.125, 0.875, 0.5] and frame["prediction"].tolist() == [0, 1, 1]
    assert frame["request_id"].tolist() == ["a", "b", "c"] and frame["routing_key"].tolist() == ["k", None, "k"]
    assert frame["prediction_id"].tolist() == ["i1", "i2", "i3"] and frame["serial_number"].tolist() == [10, 11, 12]
    assert set(frame["alias"]) == {"purchase@production"} and set(frame["variant"]) == {"gbm"}
    assert frame["shadow"].all() and set(frame["model_name"]) == {"m"}
    assert (frame["ts"] == pd.Timestamp(ts)).all(), "the prediction's time, to the microsecond"
    records = list(iter_records(path))
    assert records[0]["ts"] == "2026-11-20T08:00:00.123456+00:00"
    log.close()


def test_empty_and_repeated_values_and_an_empty_batch(tmp_path):
    path = tmp_path / "log.jsonl"
    log = PredictionLog(path, 10**6)
    assert log.append(rows_of(0, "none"))
    assert log.append(batch(INPUTS.iloc[:3], [0.5] * 3, [1] * 3, request_id="", variant="", alias="é" * 3))
    frame = read_log(path)
    assert frame["request_id"].tolist() == [""] * 3 and frame["variant"].tolist() == [""] * 3
    assert frame["alias"].tolist() == ["ééé"] * 3
    log.close()


def test_a_batch_whose_inputs_clash_with_the_log_fields_is_counted_not_raised(tmp_path):
    failures: list[BaseException] = []
    log = PredictionLog(tmp_path / "log.jsonl", 10**6, on_failure=failures.append)
    assert log.append(batch(pd.DataFrame({"probability": [1.0]}), [0.5], [1])) is False
    assert log.failures == 1 and "clash" in str(failures[0])
    log.close()


def test_shared_inputs_are_converted_once_and_logged_for_each_model(tmp_path):
    log = PredictionLog(tmp_path / "log.jsonl", 10**6)
    frame = INPUTS.iloc[:5]
    for model in ("a", "b"):  # /v1/predict: two models score one request's inputs
        context = batch(frame, [0] * 5, [0] * 5, model_name=model).context
        assert log.append(LogBatch(frame, np.full(5, 0.5), np.ones(5, dtype=int), context, shared_inputs=True))
    cached = log._shared
    assert cached is not None and cached[0] is frame
    logged = read_log(tmp_path / "log.jsonl")
    assert logged.groupby("model_name")["student_country"].apply(list).to_dict() == {
        "a": frame["student_country"].tolist(), "b": frame["student_country"].tolist()}
    log.close()


# ---------------------------------------------------------------------------------------- torn batches, failures


def test_a_torn_tail_batch_is_isolated_and_counted(tmp_path):
    path = tmp_path / "log.jsonl"
    log = PredictionLog(path, 10**6)
    for number in range(3):
        log.append(rows_of(10, f"b{number}"))
    log.close()
    tear(path)  # the writer died in the middle of its fourth batch
    stats: dict[str, int] = {}
    frame = read_log(path, stats)
    assert len(frame) == 30 and stats["skipped"] == 1
    assert all(is_compacted(f) for f in log_files(path)), "the reader compacted the dead writer's segment"
    stats = {}
    assert len(read_log(path, stats)) == 30 and stats["skipped"] == 1, "the torn count lives on in the Parquet footer"


def test_a_batch_in_flight_on_a_live_segment_is_not_counted_as_torn(tmp_path):
    path = tmp_path / "log.jsonl"
    log = PredictionLog(path, 10**6)
    log.append(rows_of(10, "whole"))
    [segment] = log_files(path)
    half = rows_of(10, "half")
    with open(segment, "ab") as handle:  # another batch, half written: its writer is still at it
        data = encode(half).serialize().to_pybytes()
        handle.write(data[: len(data) // 2])
    stats: dict[str, int] = {}
    assert len(read_log(path, stats)) == 10 and stats["skipped"] == 0
    assert compact(segment) is None and segment.exists(), "a live segment is never compacted"
    log.close()


def test_a_torn_jsonl_line_is_isolated_and_counted(tmp_path):
    path = tmp_path / "outcomes.jsonl"
    path.write_bytes(b'{"request_id":"a"}\n{"request_id":"half')
    log = JsonlLog(path, max_bytes=10**6)
    assert log.write(b'{"request_id":"b"}\n')
    stats: dict[str, int] = {}
    assert [r["request_id"] for r in iter_records(path, stats)] == ["a", "b"]
    assert stats["skipped"] == 1


def test_a_full_disk_is_counted_not_raised_by_the_jsonl_writer():
    failures: list[BaseException] = []
    log = JsonlLog(Path("/dev/full"), max_bytes=10**6, on_failure=failures.append)
    assert log.write(b'{"x":1}\n') is False
    assert log.write(b'{"x":2}\n') is False
    assert log.failures == 2 and all(isinstance(f, OSError) for f in failures)


def test_a_device_is_not_a_log_path(tmp_path):
    failures: list[BaseException] = []
    before = set(Path("/dev").iterdir())
    log = PredictionLog(Path("/dev/full"), max_bytes=10**6, on_failure=failures.append)
    assert log.append(rows_of(3, "x")) is False and log.append(rows_of(3, "y")) is False
    assert log.failures == 2 and "names a device or a folder" in str(failures[0])
    log.close()
    server = Maintenance(process=True, finish_on_close=True)
    PredictionLog(Path("/dev/full"), max_bytes=10**6, maintenance=server).close()  # no process, no pass
    assert maintenance_main(["--log", "/dev/full", "--parent", str(os.getppid())]) == 0  # refuses at once
    assert run_pass(Path("/dev/full"), server).compacted == []
    assert set(Path("/dev").iterdir()) == before, "no segment or lock file created beside the device"


def _write_under_a_file_size_limit(path: str, limit: int, result) -> None:
    # The kernel refuses to grow a file past RLIMIT_FSIZE (EFBIG; Python ignores SIGXFSZ): a real short write, then
    # a failed one, as on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    log = PredictionLog(Path(path), max_bytes=10 * limit)
    written = [f"b{n}-{i}" for n in range(60) if log.append(rows_of(40, f"b{n}")) for i in range(40)]
    log.close()
    result.put((log.failures, written))


def test_a_write_the_disk_refuses_is_counted_and_the_next_batch_goes_to_a_new_segment(tmp_path):
    path = tmp_path / "log.jsonl"
    ctx = multiprocessing.get_context("fork")
    result = ctx.Queue()
    child = ctx.Process(target=_write_under_a_file_size_limit, args=(str(path), 60_000, result))
    child.start()
    failures, written = result.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and failures >= 3
    stats: dict[str, int] = {}
    frame = read_log(path, stats)
    assert sorted(frame["request_id"]) == sorted(written), "every batch reported written is there, no other"
    assert len(written) == (60 - failures) * 40
    assert 1 <= stats["skipped"] <= failures, "a short write leaves a torn tail, counted once per segment"
    assert len(log_files(path)) == failures + 1, "each failure sealed its segment; the next batch opened another"


# ----------------------------------------------------------------------------------------------- background mode


def test_background_log_writes_everything_by_close(tmp_path):
    path = tmp_path / "log.jsonl"
    log = BackgroundLog(path, max_bytes=10**7, max_pending_rows=10**6)
    for number in range(200):
        assert log.append(rows_of(40, f"b{number}"))
    log.close()
    frame = read_log(path)
    assert len(frame) == 200 * 40 and frame["request_id"].is_unique


class SlowLog(BackgroundLog):
    """A background log whose writes of request "slow" wait for `release`: the writer thread stays busy."""

    release = threading.Event()

    def write(self, record) -> bool:
        if record.column("request_id")[0].as_py().startswith("slow"):
            self.release.wait(10)
        return super().write(record)


def test_background_log_applies_back_pressure_instead_of_dropping(tmp_path):
    path = tmp_path / "log.jsonl"
    log = SlowLog(path, max_bytes=10**7, max_pending_rows=50)
    log.append(rows_of(40, "slow"))  # occupies the writer thread
    log.append(rows_of(40, "queued"))  # 80 pending > 50: written by the caller, right now
    assert len(read_log(path)) == 40
    log.release.set()
    log.close()
    frame = read_log(path)
    assert len(frame) == 80 and frame["request_id"].is_unique  # both batches, none twice


# ----------------------------------------------------------------------------------- compaction and the readers


def _compacting_writer(path: str, process: int, mode: str) -> None:
    log = MODES[mode](Path(path), max_bytes=100_000, maintenance=NO_RETENTION)
    for number in range(40):
        log.append(rows_of(1 + number % 30, f"p{process}-b{number}"))
    log.close()  # compacts what it sealed


@pytest.mark.parametrize("mode", MODES)
def test_sealed_segments_are_compacted_to_parquet_and_read_back_whole(tmp_path, mode):
    path = tmp_path / "log.jsonl"
    _run_processes(_compacting_writer, [(str(path), p, mode) for p in range(3)])
    files = log_files(path)
    assert len(files) >= 6 and all(is_compacted(f) for f in files)
    assert not list(tmp_path.glob(".*.tmp"))
    expected = 3 * sum(1 + b % 30 for b in range(40))
    stats: dict[str, int] = {}
    frame = read_log(path, stats)
    assert stats["skipped"] == 0 and len(frame) == expected and frame["request_id"].is_unique
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"


def test_compaction_keeps_the_torn_count_and_sorts_by_model_and_time(tmp_path):
    path = tmp_path / "log.jsonl"
    log = PredictionLog(path, 10**6)
    log.append(rows_of(3, "late", model="b", ts=datetime(2026, 11, 20, 9, tzinfo=timezone.utc)))
    log.append(rows_of(2, "early", model="a", ts=datetime(2026, 11, 20, 8, tzinfo=timezone.utc)))
    log.close()
    segment = tear(path)
    os.utime(segment, (time.time() - 3_600,) * 2)
    last_write = segment.stat().st_mtime_ns
    compacted = compact(segment)
    assert compacted.stat().st_mtime_ns == last_write, "the Parquet file keeps the time of the segment's last row"
    assert compacted == segment.with_name(segment.name.removesuffix(".arrows") + ".parquet") and not segment.exists()
    table = pq.read_table(compacted)
    assert table["model_name"].to_pylist() == ["a", "a", "b", "b", "b"]
    assert compact(segment) == compacted, "a second compactor finds the work done"
    stats: dict[str, int] = {}
    assert len(read_log(path, stats)) == 5 and stats["skipped"] == 1


def test_a_jsonl_segment_of_an_older_version_compacts_with_its_torn_line(tmp_path):
    segment = tmp_path / "log.jsonl.20261120T080000000000.7"
    legacy = INPUTS.iloc[:3]
    segment.write_bytes(to_lines(legacy, np.full(3, .5), np.ones(3), request_id="late", endpoint="/x", model_name="b",
                                 model_version="v", ts="2026-11-20T09:00:00+00:00") + b'{"request_id": "to\n'
                        + to_lines(legacy.iloc[:2], np.full(2, .5), np.ones(2), request_id="early", endpoint="/x",
                                   model_name="a", model_version="v", ts="2026-11-20T08:00:00+00:00"))
    compacted = compact(segment)
    assert compacted == tmp_path / (segment.name + ".parquet") and not segment.exists()
    assert pq.read_table(compacted)["model_name"].to_pylist() == ["a", "a", "b", "b", "b"]
    stats: dict[str, int] = {}
    assert len(read_log(tmp_path / "log.jsonl", stats)) == 5 and stats["skipped"] == 1


def test_one_log_of_old_and_new_files_reads_whole(tmp_path):
    """An upgraded server's log: a compacted and a rotated JSONL segment and the live JSONL file of the version
    before, then Arrow segments, one sealed, one still written."""
    path = tmp_path / "log.jsonl"
    legacy = INPUTS.iloc[:10]
    jsonl = to_lines(legacy, np.full(10, .5), np.ones(10), request_id=[f"old-{i}" for i in range(10)],
                     endpoint="/x", model_name="m", model_version="v1")
    (tmp_path / "log.jsonl.20261120T080000000000.7").write_bytes(jsonl)
    assert compact(tmp_path / "log.jsonl.20261120T080000000000.7") is not None
    (tmp_path / "log.jsonl.20261120T090000000000.7").write_bytes(jsonl.replace(b"old-", b"rotated-"))
    path.write_bytes(jsonl.replace(b"old-", b"live-"))
    sealed = PredictionLog(path, 10**6)
    sealed.append(rows_of(5, "sealed"))
    sealed.close()
    live = PredictionLog(path, 10**6)
    live.append(rows_of(5, "open"))
    reader = LogReader(path)
    kinds = [("parquet" if is_compacted(f) else "arrows" if is_stream(f) else "jsonl") for f in reader.files]
    assert kinds == ["parquet", "parquet", "parquet", "arrows", "jsonl"], "sealed ones compacted, the live ones not"
    ids = reader.table(["request_id"])["request_id"].to_pylist()
    assert len(ids) == 40 and {i.split("-")[0] for i in ids} == {"old", "rotated", "live", "sealed", "open"}
    live.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_folder_or_a_glob_of_several_servers_logs_reads_the_fleet(tmp_path, mode):
    shared = tmp_path / "shared"
    for server in ("a", "b", "c"):
        log = MODES[mode](shared / f"prediction_log-{server}.jsonl", max_bytes=20_000, maintenance=NO_RETENTION)
        for number in range(10):
            log.append(rows_of(20, f"{server}-{number}", model="m" if server != "c" else "other"))
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
    log = PredictionLog(path, max_bytes=50_000)
    start = datetime(2026, 11, 20, 8, tzinfo=timezone.utc)
    for number in range(30):
        log.append(rows_of(100, f"b{number}", ts=start + timedelta(minutes=number)))
    log.append(rows_of(50, "old", version="v0"))
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
    since = read_window(path, "m", "v1", columns, since=start + timedelta(minutes=20))
    assert since.rows == 1_000


# ------------------------------------------------------------------------------------------------- retention


def _size(file: Path) -> int:
    # The other writer's retention may delete a segment between listing and stat: a deleted file holds no bytes.
    try:
        return file.stat().st_size
    except FileNotFoundError:
        return 0


def _fill(path: str, process: int, batches: int, mode: str) -> None:
    policy = RetentionPolicy(max_age_days=30, max_total_bytes=400_000)
    log = MODES[mode](Path(path), max_bytes=40_000, maintenance=Maintenance(compact=False, retention=policy))
    for number in range(batches):
        log.append(rows_of(50, f"p{process}-b{number}"))
        total = sum(_size(f) for f in log_files(Path(path)))
        # Each writer's open segment may grow past its rotation size by one batch, and another process's rotation
        # may not have been enforced yet: the bound plus two segments per writer.
        assert total <= 400_000 + 2 * 2 * 50_000, total
    log.close()


@pytest.mark.parametrize("mode", MODES)
def test_retention_holds_the_byte_bound_under_a_write_load_that_crosses_it(tmp_path, mode):
    path = tmp_path / "log.jsonl"
    deleted_before = REGISTRY.get_sample_value("serving_prediction_log_segments_deleted_total", {"reason": "size"}) or 0
    _run_processes(_fill, [(str(path), p, 150, mode) for p in range(2)], timeout=180)
    written = 2 * 150 * encode(rows_of(50, "p0-b000")).nbytes
    assert written > 3 * 400_000, "the load crosses the bound several times over"
    last = MODES[mode](path, max_bytes=40_000, maintenance=Maintenance(compact=False, retention=None))
    last.append(rows_of(50, "last"))  # after both writers: the newest rows of all
    last.close()
    result = enforce(path, RetentionPolicy(30, 400_000))
    assert result.bytes_on_disk <= 400_000
    kept = read_log(path)["request_id"]
    assert kept.str.startswith("last-").sum() == 50, "the newest rows are kept"
    assert not kept.str.startswith(("p0-b0-", "p1-b0-")).any(), "the oldest went"
    log = PredictionLog(path, max_bytes=1_000, maintenance=Maintenance(compact=False, retention=RetentionPolicy(30, 2_000)))
    log.append(rows_of(20, "in-process"))  # crosses both limits in this process: the metrics move
    log.append(rows_of(20, "in-process-2"))
    assert REGISTRY.get_sample_value("serving_prediction_log_segments_deleted_total", {"reason": "size"}) > deleted_before
    assert REGISTRY.get_sample_value("serving_prediction_log_bytes") <= 2_000 + 2 * 10_000
    log.close()


def test_retention_deletes_old_segments_but_never_a_live_one_nor_one_a_reader_holds(tmp_path):
    path = tmp_path / "log.jsonl"
    old = [tmp_path / f"log.jsonl.2026110{d}T000000000000.1.parquet" for d in (1, 2, 3)]
    for file in old:
        file.write_bytes(b"x" * 100)
        os.utime(file, (time.time() - 40 * 86_400,) * 2)
    path.write_bytes(b"y" * 100)  # an older version's live JSONL file
    os.utime(path, (time.time() - 40 * 86_400,) * 2)
    log = PredictionLog(path, 10**6)
    log.append(rows_of(5, "live"))
    [open_segment] = [f for f in log_files(path) if is_stream(f)]
    os.utime(open_segment, (time.time() - 40 * 86_400,) * 2)  # written long ago, still open
    with locked(old[1]):  # a reader is reading this one
        result = enforce(path, RetentionPolicy(max_age_days=30, max_total_bytes=10**9))
    assert [p for p, _ in result.deleted] == [old[0], old[2]] and {r for _, r in result.deleted} == {"age"}
    assert result.kept_held == [old[1], open_segment] and old[1].exists() and path.exists() and open_segment.exists()
    assert enforce(path, RetentionPolicy(30, 10**9)).deleted == [(old[1], "age")], "deleted once released"
    log.close()
    os.utime(open_segment, (time.time() - 40 * 86_400,) * 2)  # sealing wrote its end-of-stream marker
    assert enforce(path, RetentionPolicy(30, 10**9)).deleted == [(open_segment, "age")], "deleted once sealed"


def test_retention_deletes_by_last_write_not_by_when_a_segment_was_opened(tmp_path):
    """Each writer process has segments of its own: one opened first may have been written last."""
    path = tmp_path / "log.jsonl"
    opened = [tmp_path / f"log.jsonl.2026110{d}T000000000000.{d}.parquet" for d in (1, 2, 3)]
    for file, hours_ago in zip(opened, (1, 3, 2)):
        file.write_bytes(b"x" * 100)
        os.utime(file, (time.time() - hours_ago * 3_600,) * 2)
    result = enforce(path, RetentionPolicy(max_age_days=30, max_total_bytes=150))
    assert [p for p, _ in result.deleted] == [opened[1], opened[2]] and opened[0].exists()


# --------------------------------------------------------------------------------------- the maintenance process


def _wait_for(condition, timeout: float = 120) -> bool:
    # The maintenance process runs at nice 10: on a busy machine (other engineers' tests) it waits for CPU.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_the_maintenance_process_compacts_while_the_writer_writes_and_stops_with_it(tmp_path):
    path = tmp_path / "log.jsonl"
    log = PredictionLog(path, max_bytes=20_000, maintenance=Maintenance(retention=None, process=True,
                                                                        finish_on_close=False))
    child = psutil.Process(log._maintainer.process.pid)
    # Right after the fork its command line may still be empty (the exec has not happened yet).
    assert _wait_for(lambda: "monitoring.maintenance" in " ".join(child.cmdline()), timeout=30)
    for number in range(20):
        log.append(rows_of(30, f"b{number}"))
    sealed = [f for f in log_files(path) if is_stream(f)][:-1]
    assert len(sealed) >= 3
    assert _wait_for(lambda: all(not f.exists() for f in sealed)), "the maintenance process compacts sealed segments"
    log.append(rows_of(1, "tail"))  # a batch far below the rotation size: its segment stays open
    live = [f for f in log_files(path) if is_stream(f)]
    time.sleep(2 * INTERVAL_S)
    assert len(live) == 1 and live[0].exists(), "but never the live one"
    assert len(read_log(path)) == 601
    log.close()
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_one_maintenance_process_per_log_and_it_exits_with_its_worker(tmp_path):
    path = tmp_path / "log.jsonl"
    server = Maintenance(retention=None, process=True, finish_on_close=False)
    first = PredictionLog(path, 10**6, maintenance=server)
    assert _wait_for(lambda: election_lock(path).exists())
    second = PredictionLog(path, 10**6, maintenance=server)
    loser = second._maintainer.process
    assert _wait_for(lambda: not psutil.pid_exists(loser.pid)), "the second one exits and is reaped, no zombie left"
    assert loser.returncode == 0, "it found the log maintained"
    assert first._maintainer.process.poll() is None
    first.close()
    second.close()

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Queue()

    def worker() -> None:  # a serving worker: starts the log, then is SIGKILLed
        log = PredictionLog(path, 10**6, maintenance=server)
        ready.put(log._maintainer.process.pid)
        time.sleep(60)

    process = ctx.Process(target=worker)
    process.start()
    orphan = psutil.Process(ready.get(timeout=30))
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert _wait_for(lambda: not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE), \
        "the maintenance process leaves with its worker"


def test_a_pass_retires_an_older_versions_live_jsonl_file_and_the_cli_runs_one(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    path.write_bytes(to_lines(INPUTS.iloc[:4], np.full(4, .5), np.ones(4), request_id="old", endpoint="/x",
                              model_name="m", model_version="v1"))
    log = PredictionLog(path, 10**6)
    log.append(rows_of(6, "new"))
    log.close()
    assert maintenance_main(["--log", str(path), "--once", "--no-retention"]) == 0
    assert "compacted 2 segment(s)" in capsys.readouterr().out
    assert not path.exists() and all(is_compacted(f) for f in log_files(path))
    assert sorted(read_log(path)["request_id"].str[:3]) == ["new"] * 6 + ["old"] * 4
    assert run_pass(path, NO_RETENTION).compacted == []


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
    assert log.maintenance == Maintenance(compact=True, retention=RetentionPolicy(7.0, 5_000_000), process=True,
                                          finish_on_close=False)
    log.close()
    monkeypatch.setenv("PREDICTION_LOG_PATH", str(tmp_path / "mine.jsonl"))
    assert Settings().prediction_log_path == tmp_path / "mine.jsonl", "an explicit path still overrides"
    monkeypatch.delenv("STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Settings().drift_state_path == tmp_path / "xdg" / "purchase_serving" / "drift" / "latest.json"
