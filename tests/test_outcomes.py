"""The outcome store (monitoring/outcomes.py): duplicates, corrections, several writers, rotation, torn lines."""

from __future__ import annotations

import os
import sqlite3
import time

import orjson
import pytest

from monitoring.logreader import LogReader
from monitoring.outcomes import OUTCOME_LOG_BYTES, Outcome, OutcomeStore
from monitoring.retention import RetentionPolicy
from monitoring.segments import family
from serving.core.ids import new_ids


def test_duplicates_and_corrections_are_counted_and_only_news_are_stored(tmp_path):
    store = OutcomeStore(tmp_path / "outcomes.jsonl", max_bytes=1 << 20)
    a, b = new_ids(2)
    first = store.ingest([Outcome(a, 1), Outcome(b, 0), Outcome(a, 1)])
    assert (first.accepted, first.duplicates, first.corrections) == (2, 1, 0)
    second = store.ingest([Outcome(a, 1), Outcome(b, 1)])
    assert (second.accepted, second.duplicates, second.corrections, second.corrected) == (1, 1, 1, [1])
    rows = LogReader(tmp_path / "outcomes.jsonl").table().to_pylist()
    assert [(r["prediction_id"], r["outcome"], r["correction"]) for r in rows] == [(a, 1, False), (b, 0, False),
                                                                                 (b, 1, True)]


def test_workers_see_each_others_outcomes_across_rotations_and_torn_lines(tmp_path):
    path = tmp_path / "outcomes.jsonl"
    one, two = OutcomeStore(path, max_bytes=2_000), OutcomeStore(path, max_bytes=2_000)  # two worker processes
    ids = new_ids(200)
    for start in range(0, 100, 10):  # enough to rotate several times
        assert one.ingest([Outcome(i, 1) for i in ids[start:start + 10]]).accepted == 10
    assert len(family(path)) > 2
    with open(path, "ab") as handle:
        handle.write(b'{"prediction_id": "torn')  # a writer killed mid-line
    result = two.ingest([Outcome(i, 1) for i in ids[:100]] + [Outcome(ids[5], 0), Outcome(ids[150], 1)])
    assert (result.accepted, result.duplicates, result.corrections) == (2, 100, 1)
    assert one.ingest([Outcome(ids[5], 0), Outcome(ids[150], 1)]).duplicates == 2  # and back again
    reader = LogReader(path)
    table = reader.table(["prediction_id", "outcome"])
    assert table.num_rows == 102 and reader.skipped == 1
    assert any(p.name.endswith(".parquet") for p in family(path))  # the reader compacted rotated segments
    restarted = OutcomeStore(path, max_bytes=2_000)  # a worker started after compaction reads Parquet and JSONL
    again = restarted.ingest([Outcome(ids[5], 0), Outcome(ids[150], 0), Outcome(ids[199], 1)])
    assert (again.accepted, again.duplicates, again.corrections) == (2, 1, 1)


def test_a_failed_log_write_stores_nothing_so_the_retry_is_new(tmp_path):
    store = OutcomeStore(tmp_path / "outcomes.jsonl", max_bytes=1 << 20)
    ids = new_ids(3)
    write = store.log.write
    store.log.write = lambda lines: False  # a full disk
    with pytest.raises(OSError):
        store.ingest([Outcome(i, 1) for i in ids])
    store.log.write = write
    assert store.ingest([Outcome(i, 1) for i in ids]).accepted == 3  # the index rolled back with the log


def test_an_index_created_beside_an_existing_log_is_filled_from_it_once(tmp_path):
    """An upgrade: the store used to be the log alone (each worker indexed it in memory)."""
    path = tmp_path / "outcomes.jsonl"
    a, b, c = new_ids(3)
    lines = [{"ts": "2026-11-23T10:00:00+00:00", "prediction_id": a, "outcome": 1, "observed_at": None,
              "correction": False},
             {"ts": "2026-11-23T10:00:00+00:00", "prediction_id": b, "outcome": 0, "observed_at": None,
              "correction": False},
             {"ts": "2026-11-23T11:00:00+00:00", "prediction_id": b, "outcome": 1, "observed_at": None,
              "correction": True}]
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    store = OutcomeStore(path, max_bytes=1 << 20)
    assert not store.index_path.exists()
    result = store.ingest([Outcome(a, 1), Outcome(b, 1), Outcome(b, 0), Outcome(c, 0)])
    assert (result.accepted, result.duplicates, result.corrections) == (2, 2, 1)  # b's latest was 1
    with sqlite3.connect(store.index_path) as index:
        assert index.execute("SELECT count(*) FROM outcomes").fetchone()[0] == 3
        assert index.execute("SELECT count(*) FROM meta WHERE key = 'seeded'").fetchone()[0] == 1


def test_retention_forgets_old_outcomes_in_the_index_and_deletes_old_segments(tmp_path):
    path = tmp_path / "outcomes.jsonl"
    store = OutcomeStore(path, max_bytes=2_000, retention=RetentionPolicy(max_age_days=7, max_total_bytes=1 << 30))
    old, recent = new_ids(30), new_ids(30)
    for start in range(0, 30, 10):  # several rotations
        store.ingest([Outcome(i, 1) for i in old[start:start + 10]])
    rotated = [p for p in family(path) if p != path]
    assert rotated
    for segment in rotated:  # written eight days ago
        os.utime(segment, (time.time() - 8 * 86_400,) * 2)
    with sqlite3.connect(store.index_path) as index:
        index.execute("UPDATE outcomes SET ts = ts - 8 * 86400")
    store.ingest([Outcome(i, 1) for i in recent])
    assert store.prune() == 30
    assert not any(p.exists() for p in rotated)
    (sample,) = OUTCOME_LOG_BYTES.collect()[0].samples  # this gauge, not the multiprocess files of other tests
    assert sample.value == sum(p.stat().st_size for p in family(path))
    assert store.ingest([Outcome(i, 1) for i in old]).accepted == 30  # forgotten: stored again, as new
    assert store.ingest([Outcome(i, 1) for i in recent]).duplicates == 30  # within the window: still duplicates


def test_settings_reach_the_store(tmp_path, monkeypatch):
    from settings import Settings

    settings = Settings(outcome_log_path=tmp_path / "o.jsonl", outcome_retention=3, outcome_max_total_bytes=4096,
                        outcome_index_cache_mb=2, prediction_log_max_bytes=5000)
    store = OutcomeStore.from_settings(settings)
    assert store.index_path == tmp_path / "o.jsonl.index.sqlite"
    assert store.retention == RetentionPolicy(3, 4096) and store.cache_mb == 2
    assert store.log.max_bytes == 5000
    store.ingest([Outcome(new_ids(1)[0], 1)])
    with sqlite3.connect(store.index_path) as index:
        assert index.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
