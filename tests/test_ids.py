"""Prediction ids (serving/core/ids.py): UUIDv7 strings, unique and ordered by time."""

from __future__ import annotations

import uuid

from serving.core.ids import new_ids, normalize


def test_ids_are_uuid7_unique_and_time_ordered():
    first = new_ids(10_000, now_ms=1_795_000_000_000)
    later = new_ids(10, now_ms=1_795_000_000_001)
    assert len(set(first)) == 10_000
    parsed = uuid.UUID(first[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and str(parsed) == first[0]
    assert int.from_bytes(parsed.bytes[:6], "big") == 1_795_000_000_000
    assert max(first) < min(later)  # a later millisecond sorts after
    assert new_ids(0) == []
    # Every id of the batch (not only the first) in canonical form: the dashes of each placed right.
    assert all(str(uuid.UUID(value)) == value and uuid.UUID(value).version == 7 for value in first)
    assert len(new_ids(1)) == 1 and len(new_ids(3)) == 3


def test_normalize_accepts_canonical_uuids_only():
    value = new_ids(1)[0]
    assert normalize(value.upper()) == value
    assert normalize(" " + value) == value
    for bad in ("", "abc", value.replace("-", ""), value + "0", "g" * 8 + value[8:], 12):
        assert normalize(bad) is None
