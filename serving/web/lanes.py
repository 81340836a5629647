"""Where a route's work runs: the lanes a route declares (serving/web/policy.py).

Two cores, two lanes for predictions: BentoML's thread limiter (`threads=1`) runs only /predict's adaptive batches,
and one bulk thread runs the big requests (parsing, validating and scoring /batch_predict, /v1/predict, V2 infer,
and feedback's store writes), so single records never queue behind a 10,000-record batch. One bulk thread, not
more: parsing holds the GIL, and each model call already uses its OpenMP thread (serving/core/predictor.py).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class Lane(Enum):
    LOOP = "event loop"  # cheap work: metadata, health, a single record's admission
    BATCH = "BentoML batch"  # admitted on the loop, scored in BentoML's adaptive batches (/predict)
    BULK = "bulk"  # the one bulk thread: big bodies, parsed, validated and scored there
    THREADS = "thread pool"  # blocking work that is not scoring (admin: store reads, model loads)


_BULK: anyio.CapacityLimiter | None = None


def bulk_lane() -> anyio.CapacityLimiter:
    global _BULK
    if _BULK is None:
        _BULK = anyio.CapacityLimiter(1)
    return _BULK


async def run(lane: Lane, func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in `lane`: inline on the event loop, on the bulk thread, or on the thread pool."""
    if lane is Lane.BULK:
        return await anyio.to_thread.run_sync(func, *args, limiter=bulk_lane())
    if lane is Lane.THREADS:
        return await anyio.to_thread.run_sync(func, *args)
    return func(*args)
