"""A lane of its own for costly, deferrable work (explanations, serving/web/policy.py `Lane.EXPLAIN`): one thread at a
lower priority, with a bounded queue.

- **Priority.** The thread is niced (Linux: a thread id is a process id to `setpriority`, so only this thread is
  lowered), so its work takes the CPU the prediction lanes leave idle; measured in bench/bench_explain.py.
- **Bounded queue.** At most `queue` calls wait behind the running one; the next is refused at once (`LaneFull`, a 503
  the route answers in its own shape). A waiting call that has not started after `wait_seconds` is withdrawn, never
  run, and refused the same way: with the lane niced, a busy machine can stretch a call far past its CPU time, and
  work must not pile up past the request timeout only to be computed for clients that are gone. A call that has
  started runs to its end (a thread cannot be interrupted).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from serving.errors import ServingError

logger = logging.getLogger("bentoml.service")
T = TypeVar("T")


class LaneFull(ServingError):
    status = 503
    reason = "lane_full"
    headers = {"Retry-After": "5"}


def lower_priority(nice: int) -> None:
    """Nice the calling thread (and only it) to `nice`."""
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError as exc:  # a platform without per-thread priorities keeps the default
            logger.warning("lane thread keeps the default priority: %s", exc)


class NicedLane:
    """One niced thread; at most `queue` calls waiting for it, each at most `wait_seconds`."""

    def __init__(self, name: str, nice: int, queue: int, wait_seconds: float):
        self.name, self.nice, self.queue, self.wait_seconds = name, nice, queue, wait_seconds
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=name, initializer=lower_priority, initargs=(nice,))
        self._lock = threading.Lock()
        self._admitted = 0  # running + waiting: decremented when a call ends or is withdrawn (a done callback)

    @property
    def admitted(self) -> int:
        return self._admitted

    def submit(self, func: Callable[..., T], *args: Any) -> Future[T]:
        """`func(*args)` on the lane's thread, or `LaneFull` when `queue` calls already wait."""
        with self._lock:
            if self._admitted > self.queue:  # one running, `queue` waiting
                raise LaneFull(f"The {self.name} lane is full: {self._admitted - 1} calls are waiting for it (at most "
                               f"{self.queue}); retry later.")
            self._admitted += 1
        future = self.executor.submit(func, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` on the lane's thread, awaited; `LaneFull` when refused or when it did not start in time."""
        future = self.submit(func, *args)
        waiting = asyncio.wrap_future(future)
        try:
            done, _ = await asyncio.wait({waiting}, timeout=self.wait_seconds)
        except asyncio.CancelledError:  # the request is gone (its client, or the request timeout): so is its call
            future.cancel()
            raise
        if not done and future.cancel():  # still waiting: withdrawn, it will never run
            raise LaneFull(f"The {self.name} lane is busy: this call waited {self.wait_seconds:g} s without starting; "
                           "retry later.")
        return await waiting
