"""The prediction log on its own: many writers, rotation, torn lines, a full disk."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.predictlog import BackgroundLog, PredictionLog, iter_records, log_files, read_log, to_lines
from training.data import generate_purchase

INPUTS = generate_purchase(40, seed=3).drop(columns="purchased")


def _writer(path: str, process: int, batches: int) -> None:
    log = PredictionLog(Path(path), max_bytes=200_000)

    def run(thread: int) -> None:
        for batch in range(batches):
            rows = INPUTS.iloc[: 1 + (batch * 7) % 40]
            ids = [f"p{process}-t{thread}-b{batch}-r{i}" for i in range(len(rows))]
            lines = to_lines(rows, np.full(len(rows), 0.25), np.zeros(len(rows), dtype=int),
                             request_id=ids, endpoint="/predict", model_name="m", model_version="v1")
            assert log.write(lines)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_processes_and_threads_lose_nothing_across_rotation(tmp_path):
    path = tmp_path / "log.jsonl"
    batches = 60
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=_writer, args=(str(path), p, batches)) for p in range(4)]
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
