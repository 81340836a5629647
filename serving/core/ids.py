"""Prediction ids: one per scored row, unique across workers and restarts, time-ordered.

Each id is a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits from `os.urandom`, in the
canonical 36-character form. Time first means ids sort (and index) by when the prediction was made; the random
bits make a collision between two workers in the same millisecond negligible (2^-74 per pair) with no coordination.
Python 3.11/3.12's `uuid` module has no `uuid7` (3.14 adds it), so the layout is built here: for a 10,000-row
batch, one `os.urandom` call and one hex conversion instead of 10,000 `uuid.UUID` objects.
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
    text = raw.tobytes().hex()
    return [
        f"{text[i:i + 8]}-{text[i + 8:i + 12]}-{text[i + 12:i + 16]}-{text[i + 16:i + 20]}-{text[i + 20:i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def normalize(value: str) -> str | None:
    """A client's id in the canonical lower-case form, or None when it is not a UUID string."""
    candidate = value.strip().lower() if isinstance(value, str) else ""
    return candidate if PATTERN.match(candidate) else None
