"""The prediction log: one JSON object per line and per prediction, appended by every worker process.

Lines are serialized for a whole batch at once (pandas' C writer) and reach the kernel in a single `O_APPEND`
write before the HTTP response leaves, so a worker killed with SIGKILL loses no line of a request that got
its 200, and concurrent writers never interleave (Linux appends one `write` atomically to a local file).
`BackgroundLog` (PREDICTION_LOG_MODE=background) moves encoding and writing to a thread instead, for big
batches where durability against SIGKILL matters less than latency. Size-based rotation renames
the file under an advisory lock; a writer that raced the rename lands its line in the rotated file, which
readers read too, so nothing is lost. A failed write never fails the prediction: it is counted and logged.

After a rotation the rotating process compacts the rotated segment into Parquet on a maintenance thread and applies
retention (monitoring/segments.py, monitoring/retention.py); readers read through monitoring/logreader.py.

Line layout (flat, so a day of logs loads straight into a DataFrame):
    ts, request_id, endpoint, model_name, model_version, routing_key, variant, alias, shadow,
    <every input column of the model>, probability, prediction
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pandas as pd

from monitoring import segments
from monitoring.logreader import LogMissing, LogReader, to_frame
from monitoring.retention import RetentionPolicy, enforce

if TYPE_CHECKING:
    from settings import Settings

logger = logging.getLogger(__name__)

META_COLUMNS = ("ts", "request_id", "endpoint", "model_name", "model_version", "routing_key", "variant", "alias", "shadow",
                "prediction_id", "serial_number")
OUTPUT_COLUMNS = ("probability", "prediction")
RESERVED = frozenset(META_COLUMNS + OUTPUT_COLUMNS)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def to_lines(
    inputs: pd.DataFrame,
    probability: np.ndarray,
    prediction: np.ndarray,
    *,
    request_id: str | list[str],
    endpoint: str,
    model_name: str,
    model_version: str,
    routing_key: str | None | list[str | None] = None,
    variant: str | None = None,
    ts: str | None = None,
    encoded_inputs: list[bytes] | None = None,
    alias: str | None = None,
    shadow: bool = False,
    per_row: dict[str, list] | None = None,
) -> bytes:
    """Serialize one batch of predictions as JSON lines. What the batch shares is encoded once; `request_id` and
    `routing_key` may be per row (an adaptive batch mixes requests); `encoded_inputs` is `encode_inputs(inputs)`
    when the caller already has it."""
    clashing = RESERVED.intersection(inputs.columns)
    if clashing:
        raise ValueError(f"input columns {sorted(clashing)} clash with the log's own fields")
    shared: dict[str, object] = {
        "ts": ts or now_iso(),
        "endpoint": endpoint,
        "model_name": model_name,
        "model_version": model_version,
        "variant": variant,
        "alias": alias,  # the stage alias (task@stage) the request named, if any
        "shadow": shadow,  # true: a shadow model's prediction for the primary's record, never sent to the client
    }
    columns: list[str] = []
    values: list[list] = []
    for key, value in (("request_id", request_id), ("routing_key", routing_key)):
        if isinstance(value, list):
            columns.append(key)
            values.append(value)
        else:
            shared[key] = value
    for key, value in (per_row or {}).items():  # prediction_id, serial_number (issue 13)
        columns.append(key)
        values.append(value)
    prefix = orjson.dumps(shared)[:-1] + b","
    probabilities = np.asarray(probability, dtype=np.float64).tolist()
    predictions = np.asarray(prediction, dtype=np.int64).tolist()
    if encoded_inputs is None:
        columns += list(inputs.columns)
        values += [inputs[column].tolist() for column in inputs.columns]
        columns += ["probability", "prediction"]
        values += [probabilities, predictions]
        # `dumps(...)[1:]` drops the row's opening brace so the shared prefix can stand in front of it.
        lines = [prefix + orjson.dumps(dict(zip(columns, row)))[1:] for row in zip(*values)]
        return b"\n".join(lines) + b"\n" if lines else b""
    # Inputs already encoded (another model scored the same frame): only the per-row fields and outputs are new.
    # A JSON array of numbers splits on its commas into the numbers as orjson writes them alone.
    outputs = zip(orjson.dumps(probabilities)[1:-1].split(b","), orjson.dumps(predictions)[1:-1].split(b","))
    if columns:
        heads = [orjson.dumps(dict(zip(columns, row)))[1:-1] + b"," for row in zip(*values)]
    else:
        heads = [b""] * len(encoded_inputs)
    lines = [b'%s%s%s,"probability":%s,"prediction":%s}' % (prefix, head, row, p, c)
             for head, row, (p, c) in zip(heads, encoded_inputs, outputs)]
    return b"\n".join(lines) + b"\n" if lines else b""


def encode_inputs(inputs: pd.DataFrame) -> list[bytes]:
    """Each row's input fields as JSON object members (`"column":value,...`, no braces): the part of a log line
    that several models scoring the same inputs (/v1/predict) share, so it can be encoded once for all of them."""
    columns = list(inputs.columns)
    values = [inputs[column].tolist() for column in columns]
    return [orjson.dumps(dict(zip(columns, row)))[1:-1] for row in zip(*values)]


@dataclass(frozen=True)
class Maintenance:
    """What the rotating process does with a rotated segment: compact it to Parquet, then apply retention."""

    compact: bool = True
    retention: RetentionPolicy | None = RetentionPolicy()

    @classmethod
    def from_settings(cls, settings: Settings) -> Maintenance:
        return cls(
            compact=settings.prediction_log_compact,
            retention=RetentionPolicy(settings.prediction_log_retention, settings.prediction_log_max_total_bytes),
        )


class PredictionLog:
    """Appends serialized lines to a JSONL file shared by every process; rotates it by size."""

    def __init__(self, path: Path, max_bytes: int, on_failure: Callable[[BaseException], None] | None = None,
                 maintenance: Maintenance | None = None):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.on_failure = on_failure
        self.maintenance = maintenance
        # One thread, created on the first rotation: compaction parses a whole segment and must not run on the
        # request path, nor twice at once in one process.
        self._maintainer: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: int | None = None
        self.failures = 0
        self._last_warning = -math.inf

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
                    # Rotated between our open and our lock? Then its compaction may already hold the lines it will
                    # keep: write to the new live file instead (a stat; compaction locks a segment before reading it).
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
            self._failed(exc)
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

    def _failed(self, exc: OSError) -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self._last_warning > 60:  # a full disk fails every request: say so once a minute, not per call
            self._last_warning = now
            logger.warning("prediction log write to %s failed (%d failures so far): %s", self.path, self.failures, exc)
        if self.on_failure is not None:
            self.on_failure(exc)

    def _rotate(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                return
            # Another process may have rotated while we waited for the lock.
            if current.st_ino != self._inode or current.st_size <= self.max_bytes:
                return
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            rotated = self.path.with_name(f"{self.path.name}.{stamp}.{os.getpid()}")
            os.rename(self.path, rotated)
        self._close_fd()
        if self.maintenance is not None:
            if self.maintenance.retention is not None:
                self._retain()  # a few stats and unlinks: at once, so the bound holds under load
            if self._maintainer is None:
                self._maintainer = ThreadPoolExecutor(1, thread_name_prefix="prediction-log-maintenance")
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._maintainer.submit(self._maintain, rotated))

    def _retain(self) -> None:
        assert self.maintenance is not None and self.maintenance.retention is not None
        try:
            enforce(self.path, self.maintenance.retention)
        except OSError as exc:
            logger.warning("prediction log retention on %s failed: %s", self.path, exc)

    def _maintain(self, rotated: Path) -> None:
        assert self.maintenance is not None
        if self.maintenance.compact:
            try:
                segments.compact(rotated)
            except Exception:  # noqa: BLE001 - a segment left as JSONL is still read; readers retry compaction
                logger.exception("cannot compact prediction-log segment %s", rotated)
        if self.maintenance.retention is not None:
            self._retain()

    def flush_maintenance(self) -> None:
        """Wait for compaction and retention started by past rotations (tests, shutdown)."""
        for future in list(self._pending):
            future.result()
        self._pending.clear()

    def submit(self, encode: Callable[[], bytes], rows: int) -> None:
        """Encode and append now: the lines are in the kernel before the caller answers its client."""
        try:
            lines = encode()
        except Exception as exc:  # noqa: BLE001 - a line we cannot encode is a logging fault, counted like one
            logger.exception("cannot encode prediction-log lines")
            self._failed(OSError(str(exc)))
            return
        self.write(lines)

    def close(self) -> None:
        with self._lock:
            self._close_fd()
        if self._maintainer is not None:
            self._maintainer.shutdown(wait=True)
            self._maintainer = None
            self._pending.clear()

    @classmethod
    def from_settings(cls, settings: Settings, on_failure: Callable[[BaseException], None] | None = None
                      ) -> PredictionLog:
        """The log a server writes: its mode, rotation size, compaction and retention from the settings."""
        log_class = BackgroundLog if settings.prediction_log_mode == "background" else PredictionLog
        log = log_class(settings.prediction_log_path, settings.prediction_log_max_bytes, on_failure,
                        maintenance=Maintenance.from_settings(settings))
        log._retain()  # at start too: a server restarted after a long stop deletes what aged meanwhile
        return log


class BackgroundLog(PredictionLog):
    """Encodes and appends on a writer thread, so a request only enqueues its batch.

    The trade: a worker killed with SIGKILL loses what is still queued (at most `max_pending_rows`); a clean
    shutdown drains the queue. Memory stays bounded: past `max_pending_rows` the caller encodes and writes
    its own lines (back-pressure), so nothing is dropped.
    """

    def __init__(self, path: Path, max_bytes: int, on_failure: Callable[[BaseException], None] | None = None,
                 max_pending_rows: int = 100_000, maintenance: Maintenance | None = None):
        super().__init__(path, max_bytes, on_failure, maintenance=maintenance)
        self.max_pending_rows = max_pending_rows
        self._jobs: deque[tuple[Callable[[], bytes], int]] = deque()
        # Not `_pending`: that name is the base class's list of maintenance futures, which `_rotate` iterates
        # (reusing it for a row count killed the writer thread at the first rotation: issue 20).
        self._queued_rows = 0
        self._stopping = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, encode: Callable[[], bytes], rows: int) -> None:
        with self._ready:
            queued = not self._stopping and self._queued_rows + rows <= self.max_pending_rows
            if queued:
                self._jobs.append((encode, rows))
                self._queued_rows += rows
                self._ready.notify()
        if not queued:
            super().submit(encode, rows)

    def _drain(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._stopping:
                    self._ready.wait()
                if not self._jobs:
                    return
                encode, rows = self._jobs.popleft()
            try:
                super().submit(encode, rows)
            except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any one batch's fault
                logger.exception("prediction-log writer thread: a batch of %d rows failed", rows)
                self._failed(OSError(str(exc)))
            finally:
                with self._ready:
                    self._queued_rows -= rows

    def close(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(timeout=60)
        super().close()


def log_files(path: Path) -> list[Path]:
    """The segments oldest first (rotated JSONL or compacted Parquet), then the live one."""
    return segments.family(Path(path))


def read_log(source: Path | str, stats: dict[str, int] | None = None) -> pd.DataFrame:
    """Every valid record of a log, a folder of logs or a glob, as one DataFrame (small logs and tests; jobs read
    windows through monitoring/logreader.py). Lines that do not parse are counted in `stats["skipped"]`."""
    try:
        reader = LogReader(source)
    except LogMissing:
        return pd.DataFrame()
    frame = to_frame(reader.table())
    if stats is not None:
        stats["skipped"] = stats.get("skipped", 0) + reader.skipped
    return frame


def iter_records(source: Path | str, stats: dict[str, int] | None = None) -> Iterator[dict]:
    """Every valid record as a dict (`ts` as the ISO string it was logged as)."""
    frame = read_log(source, stats)
    if "ts" in frame.columns:
        frame["ts"] = [t.isoformat(timespec="microseconds") if pd.notna(t) else None for t in frame["ts"]]
    yield from frame.to_dict("records")
