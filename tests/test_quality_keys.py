"""Prediction ids as numbers (monitoring/quality/keys.py): exact against Python's uuid, every malformed id refused,
and a probe that matches only the very same id."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa

from monitoring.quality.keys import KeyIndex, keys_of, last_distinct
from serving.core.ids import new_ids


def test_keys_are_the_uuids_128_bits():
    ids = new_ids(1_000) + [str(uuid.uuid4()) for _ in range(1_000)]
    keys = keys_of(pa.chunked_array([pa.array(ids[:700]), pa.array(ids[700:])]))
    assert keys.valid.all()
    for i, text in enumerate(ids):
        value = uuid.UUID(text).int
        assert (int(keys.hi[i]), int(keys.lo[i])) == (value >> 64, value & (2**64 - 1))
    sliced = keys_of(pa.array(ids).slice(5, 10))  # an Arrow slice starts inside its buffers
    assert (sliced.hi == keys.hi[5:15]).all() and (sliced.lo == keys.lo[5:15]).all()


def test_malformed_ids_are_invalid_and_match_nothing():
    good = new_ids(1)[0]
    bad = [None, "", "not-an-id", good.upper(), good.replace("-", ""), good[:-1] + "g", good[:8] + "x" + good[9:],
           "{" + good[1:], good + " "]
    keys = keys_of(pa.array([good, *bad]))
    assert keys.valid.tolist() == [True] + [False] * len(bad)
    index = KeyIndex(keys_of(pa.array([good])))
    assert index.positions(keys).tolist() == [0] + [-1] * len(bad)
    assert len(keys_of(pa.array([], pa.string()))) == 0 and len(keys_of(pa.nulls(3))) == 3


def test_a_probe_finds_the_same_id_only_and_the_latest_of_each_id_is_kept():
    stored = new_ids(5_000)
    index = KeyIndex(keys_of(pa.array(stored)))
    others = new_ids(5_000)
    probe = keys_of(pa.array([*others[:100], *stored[::-1]]))
    found = index.positions(probe)
    assert (found[:100] == -1).all() and found[100:].tolist() == list(range(4_999, -1, -1))
    # Same lower 64 bits, different upper ones: the fold may meet, the confirmation on both words must not.
    twin = keys_of(pa.array([stored[0]]))
    forged = type(twin)(twin.hi ^ np.uint64(1), twin.lo, twin.valid)
    assert index.positions(forged).tolist() == [-1]
    keys = keys_of(pa.array([stored[0], stored[1], stored[0], None, stored[2], stored[1]]))
    assert last_distinct(keys).tolist() == [2, 4, 5]
