"""Prediction ids as numbers, so that millions of predictions join their outcomes in numpy instead of in Python.

A prediction id is a UUID in its canonical 36-character form (serving/core/ids.py writes them; POST /v1/feedback
accepts only that form and lower-cases it). Its 32 hex digits are its 128 bits: `hi` and `lo`, two uint64 words,
read straight from an Arrow string column's buffer, a pair of digits at a time through a 65,536-entry table (15 ms
of CPU for a segment of 150,000 ids here). `mixed` folds both words into one uint64 for pandas' hash index; a match
on it is then confirmed on both words, so a fold collision never joins the wrong rows.

Why by hand, measured on 10M prediction ids against 2M outcome ids (a prototype, load average 10): Arrow's
`pc.is_in` rebuilds the hash of the 2M outcome ids at every call, once per segment: 85 s; one Acero hash join over
the whole log needs every id of the day in memory as strings: 10.3 s; these keys and one pandas index, built once
and probed segment by segment: 6.4 s, and memory of one segment's ids at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_LENGTH = 36
_HYPHENS = np.array([8, 13, 18, 23])
_FIRSTS = np.array([c for c in range(_LENGTH) if c not in _HYPHENS])[0::2]  # where each pair of digits starts
_PLACEHOLDER = "0" * _LENGTH


def _pair_table() -> np.ndarray:
    """Two characters (first << 8 | second) -> the byte they spell in hex, or 256 unless both are 0-9 or a-f."""
    digit = np.full(256, -1)
    for value, char in enumerate(b"0123456789abcdef"):
        digit[char] = value
    first, second = np.meshgrid(digit, digit, indexing="ij")
    return np.where((first >= 0) & (second >= 0), first * 16 + second, 256).astype(np.uint16).ravel()


_PAIRS = _pair_table()
# Odd 64-bit multipliers (the golden ratio's, then others): a fold is retried with the next one if two distinct
# outcome ids ever fold to the same number (about 1 in 10^7 for 2M ids).
_MULTIPLIERS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)


@dataclass(frozen=True)
class Keys:
    hi: np.ndarray  # uint64: the id's first 16 hex digits
    lo: np.ndarray  # uint64: its last 16
    valid: np.ndarray  # bool: a canonical lower-case UUID (a null or any other text is not, and matches nothing)

    def __len__(self) -> int:
        return len(self.hi)

    def take(self, positions: np.ndarray) -> Keys:
        return Keys(self.hi[positions], self.lo[positions], self.valid[positions])

    def mixed(self, multiplier: int) -> np.ndarray:
        return self.lo ^ (self.hi * np.uint64(multiplier))


def keys_of(ids: pa.Array | pa.ChunkedArray) -> Keys:
    """The numeric keys of a string column of ids."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.string())
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        ids = ids.cast(pa.string())  # an all-null column is typed null
    if not len(ids):
        empty = np.empty(0, np.uint64)
        return Keys(empty, empty, np.empty(0, bool))
    shaped = pc.fill_null(pc.equal(pc.utf8_length(ids), _LENGTH), False)
    if not pc.all(shaped).as_py():
        ids = pc.if_else(shaped, ids, pa.scalar(_PLACEHOLDER, ids.type))
    offsets_type = np.int64 if pa.types.is_large_string(ids.type) else np.int32
    offsets = np.frombuffer(ids.buffers()[1], offsets_type)[ids.offset: ids.offset + len(ids) + 1]
    data = np.frombuffer(ids.buffers()[2], np.uint8)[offsets[0]: offsets[-1]].reshape(-1, _LENGTH)
    octets = _PAIRS[(data[:, _FIRSTS].astype(np.uint16) << 8) | data[:, _FIRSTS + 1]]  # 16 bytes, or 256
    valid = (octets < 256).all(axis=1) & (data[:, _HYPHENS] == ord("-")).all(axis=1)
    valid &= shaped.to_numpy(zero_copy_only=False)
    words = np.ascontiguousarray(octets, dtype=np.uint8).view(">u8").astype(np.uint64)
    return Keys(words[:, 0].copy(), words[:, 1].copy(), valid)


class KeyIndex:
    """A hash index over distinct ids (their positions), probed by other ids' keys."""

    def __init__(self, keys: Keys):
        self.keys = keys
        for multiplier in _MULTIPLIERS:
            index = pd.Index(keys.mixed(multiplier))
            if index.is_unique:
                self.multiplier, self.index = multiplier, index
                return
        raise ValueError("cannot index the ids: every fold collided")  # distinct ids: never seen, astronomically rare

    def positions(self, probe: Keys) -> np.ndarray:
        """For each probed id, the position of the same id in the index, or -1."""
        found = self.index.get_indexer(probe.mixed(self.multiplier))
        hit = (found >= 0) & probe.valid
        where = found[hit]
        same = (self.keys.hi[where] == probe.hi[hit]) & (self.keys.lo[where] == probe.lo[hit])
        hit[np.flatnonzero(hit)[~same]] = False
        return np.where(hit, found, -1)


def last_distinct(keys: Keys) -> np.ndarray:
    """Positions of the last occurrence of each distinct valid id, in order (the store's latest outcome per id).
    Ids repeat rarely (a correction, a line written twice): the fold finds the candidates in one hash pass, and
    only those are compared on both words."""
    keep = keys.valid.copy()
    candidates = np.flatnonzero(pd.Series(keys.mixed(_MULTIPLIERS[0])).duplicated(keep=False).to_numpy())
    if len(candidates):
        words = pd.DataFrame({"hi": keys.hi[candidates], "lo": keys.lo[candidates]})
        keep[candidates[words.duplicated(keep="last").to_numpy()]] = False
    return np.flatnonzero(keep)
