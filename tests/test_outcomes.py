"""The outcome store (monitoring/outcomes.py): duplicates, corrections, several writers, rotation, torn lines."""

from __future__ import annotations

from monitoring.logreader import LogReader
from monitoring.outcomes import Outcome, OutcomeStore
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
