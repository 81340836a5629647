"""A JSON-lines file shared by every process, appended one whole write at a time and rotated by size: the outcome
store's writer (monitoring/outcomes.py). (The prediction log wrote this format before it wrote Arrow segments.)

Each `write` reaches the kernel in a single `O_APPEND` write under an exclusive `flock`, so concurrent writers never
interleave and a SIGKILLed writer loses nothing it returned from. Rotation renames the file under a lock file; a
writer that raced the rename re-checks after taking its lock that its file is still the live one. A writer killed
mid-line leaves a partial line, which the next write isolates on a line of its own (readers skip and count it).
A failed write is counted and logged, never raised.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

logger = logging.getLogger(__name__)


class Failures:
    """A log's failed writes: counted, passed to `on_failure` (a metric), and said in the server log once a minute
    (a full disk fails every request)."""

    def __init__(self, path: Path, on_failure: Callable[[BaseException], None] | None = None):
        self.path = path
        self.on_failure = on_failure
        self.count = 0
        self._last_warning = -math.inf

    def __call__(self, exc: BaseException) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            logger.warning("prediction log write to %s failed (%d failures so far): %s", self.path, self.count, exc)
        if self.on_failure is not None:
            self.on_failure(exc)


class JsonlLog:
    """Appends serialized lines to a JSONL file shared by every process; rotates it by size."""

    def __init__(self, path: Path, max_bytes: int, on_failure: Callable[[BaseException], None] | None = None):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.failed = Failures(self.path, on_failure)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: int | None = None

    @property
    def failures(self) -> int:
        return self.failed.count

    def _open(self) -> int:
        # Reopen when another process rotated the file under us; stat is a few microseconds.
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if self._fd is None or inode != self._inode:
            self._close_fd()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            self._inode = os.fstat(self._fd).st_ino
        return self._fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None

    def write(self, lines: bytes) -> bool:
        """Append whole lines; returns False (after counting the failure) instead of raising."""
        if not lines:
            return True
        try:
            with self._lock:
                while True:
                    fd = self._open()
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    # Rotated between our open and our lock? A reader may compact the rotated file: write to the new
                    # live file instead (a stat; compaction locks a segment before reading it).
                    if self._is_live(fd):
                        break
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    self._close_fd()
                try:
                    self._append(fd, lines)
                    rotate = os.fstat(fd).st_size > self.max_bytes
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                if rotate:
                    self._rotate()
            return True
        except OSError as exc:
            self._close_fd()
            self.failed(exc)
            return False

    def _is_live(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    @staticmethod
    def _append(fd: int, lines: bytes) -> None:
        # A writer killed mid-write can leave a partial line; start on a fresh line so that fragment stays a
        # line of its own (readers skip and count it) instead of swallowing the next, valid record.
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            lines = b"\n" + lines
        view = memoryview(lines)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def _rotate(self) -> None:
        rotate_jsonl(self.path, lambda current: current.st_ino == self._inode and current.st_size > self.max_bytes)
        self._close_fd()

    def close(self) -> None:
        with self._lock:
            self._close_fd()


def rotate_jsonl(path: Path, should: Callable[[os.stat_result], bool] = lambda _: True) -> Path | None:
    """Rename the live JSONL file `path` to a rotated segment (`path.<stamp>.<pid>`) under the rotation lock, when
    `should(its stat)` still holds once the lock is taken (another process may have rotated meanwhile)."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            return None
        if not should(current):
            return None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        rotated = path.with_name(f"{path.name}.{stamp}.{os.getpid()}")
        os.rename(path, rotated)
        return rotated
