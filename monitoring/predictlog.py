"""The prediction log's writer: every scored batch (`LogBatch`, monitoring/logbatch.py) appended as one Arrow record
batch to a segment of the process's own (monitoring/ipc.py), before the HTTP response leaves.

PREDICTION_LOG_MODE=sync (`PredictionLog`): the batch is encoded and written in the request's thread; its rows are
in the kernel before the caller answers, so a worker killed with SIGKILL loses no row of a request that got its
200. PREDICTION_LOG_MODE=background (`BackgroundLog`): a writer thread encodes and writes instead; a SIGKILL loses
what is still queued, a clean shutdown loses nothing. In both modes nothing is lost across rotations, several
threads and worker processes write at once (each process its own segments, so they never wait for each other),
and a failed write is counted and logged, never raised into the prediction.

A process keeps one open segment per schema (a schema per model's inputs) and seals it past PREDICTION_LOG_MAX_BYTES
(rotation); retention runs at each rotation. Compaction into Parquet runs off the serving worker
(monitoring/maintenance.py). Format and guarantees: docs/prediction-log.md.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from monitoring import segments
from monitoring.ipc import StreamSegment
from monitoring.jsonlog import Failures
from monitoring.logbatch import LogBatch, encode, input_columns
from monitoring.logreader import LogMissing, LogReader, to_frame
from monitoring.maintenance import Maintenance, MaintenanceProcess, run_pass
from monitoring.retention import enforce

if TYPE_CHECKING:
    from settings import Settings

logger = logging.getLogger(__name__)
MAX_OPEN_SEGMENTS = 8  # schemas a process writes at once (models with other inputs); past it the stalest is sealed


class PredictionLog:
    """Appends scored batches to this process's Arrow segments of the log at `path`; seals them by size."""

    def __init__(self, path: Path, max_bytes: int, on_failure: Callable[[BaseException], None] | None = None,
                 maintenance: Maintenance | None = None):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.maintenance = maintenance
        self._failed = Failures(self.path, on_failure)
        self._open: list[StreamSegment] = []  # the most recently used last
        self._lock = threading.Lock()
        self._shared: tuple[pd.DataFrame, list[pa.Array]] | None = None
        self._shared_lock = threading.Lock()
        self._pid = os.getpid()
        self._last_stamp = datetime.min.replace(tzinfo=timezone.utc)
        self._maintainer = (
            MaintenanceProcess(self.path, maintenance)
            if maintenance is not None and maintenance.process and (maintenance.compact or maintenance.retention)
            and not segments.not_a_log(self.path)
            else None
        )

    @property
    def failures(self) -> int:
        return self._failed.count

    def append(self, batch: LogBatch) -> bool:
        """Encode and write one scored batch now; returns False (after counting the failure) instead of raising."""
        try:
            record = encode(batch, self._shared_columns(batch.inputs) if batch.shared_inputs else None)
        except Exception as exc:  # noqa: BLE001 - a batch we cannot encode is a logging fault, counted like one
            logger.exception("cannot encode a prediction-log batch")
            self._failed(exc)
            return False
        return self.write(record)

    def _shared_columns(self, inputs: pd.DataFrame) -> list[pa.Array]:
        # The last shared frame and its columns; holding the frame keeps its identity from being reused.
        with self._shared_lock:
            if self._shared is None or self._shared[0] is not inputs:
                self._shared = (inputs, input_columns(inputs))
            return self._shared[1]

    def write(self, record: pa.RecordBatch) -> bool:
        """Append an encoded batch to the segment of its schema; False (counted) when it could not be written."""
        if not record.num_rows:
            return True
        try:
            with self._lock:
                segment = self._segment(record.schema)
                try:
                    segment.write(record)
                except OSError:
                    self._seal(segment, clean=False)  # its tail may be torn: nothing is appended after it
                    raise
                rotated = segment.size > self.max_bytes
                if rotated:
                    self._seal(segment)
            if rotated:
                self._retain()
            return True
        except Exception as exc:  # noqa: BLE001 - a failed write is counted, never raised into the prediction
            self._failed(exc)
            return False

    def _segment(self, schema: pa.Schema) -> StreamSegment:
        if os.getpid() != self._pid:  # a forked child: its parent's segments stay its parent's
            for segment in self._open:
                segment.abandon()
            self._open.clear()
            self._pid = os.getpid()
        # A scan with Arrow's own comparison: hashing a schema costs more than comparing it to a few.
        segment = next((s for s in reversed(self._open) if s.schema.equals(schema)), None)
        if segment is None:
            if len(self._open) >= MAX_OPEN_SEGMENTS:
                self._seal(self._open[0])
            problem = segments.not_a_log(self.path)
            if problem:
                raise OSError(errno.EINVAL, problem)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            segment = StreamSegment(segments.segment_path(self.path, self._stamp(), self._pid), schema)
            self._open.append(segment)
        elif segment is not self._open[-1]:
            self._open.remove(segment)
            self._open.append(segment)
        return segment

    def _stamp(self) -> str:
        # Unique per process even for two segments opened in the same microsecond (two schemas).
        stamp = max(datetime.now(timezone.utc), self._last_stamp + timedelta(microseconds=1))
        self._last_stamp = stamp
        return stamp.strftime("%Y%m%dT%H%M%S%f")

    def _seal(self, segment: StreamSegment, clean: bool = True) -> None:
        if segment in self._open:
            self._open.remove(segment)
        segment.seal(clean)

    def _retain(self) -> None:
        if self.maintenance is not None and self.maintenance.retention is not None:
            try:
                enforce(self.path, self.maintenance.retention)
            except OSError as exc:
                logger.warning("prediction log retention on %s failed: %s", self.path, exc)

    def close(self) -> None:
        """Seal this process's segments; then, per `maintenance`, stop its process or finish its work here."""
        with self._lock:
            for segment in list(self._open):
                self._seal(segment)
        if self._maintainer is not None:
            self._maintainer.stop()
            self._maintainer = None
        if self.maintenance is not None and self.maintenance.finish_on_close:
            run_pass(self.path, self.maintenance)

    @classmethod
    def from_settings(cls, settings: Settings, on_failure: Callable[[BaseException], None] | None = None
                      ) -> PredictionLog:
        """The log a server writes: its mode, rotation size, maintenance process and retention from the settings."""
        log_class = BackgroundLog if settings.prediction_log_mode == "background" else PredictionLog
        log = log_class(settings.prediction_log_path, settings.prediction_log_max_bytes, on_failure,
                        maintenance=Maintenance.from_settings(settings))
        log._retain()  # at start too: a server restarted after a long stop deletes what aged meanwhile
        return log


class BackgroundLog(PredictionLog):
    """Encodes and appends on a writer thread, so a request only enqueues its batch.

    The trade: a worker killed with SIGKILL loses what is still queued (at most `max_pending_rows`); a clean
    shutdown drains the queue. Memory stays bounded: past `max_pending_rows` the caller encodes and writes
    its own batch (back-pressure), so nothing is dropped.
    """

    def __init__(self, path: Path, max_bytes: int, on_failure: Callable[[BaseException], None] | None = None,
                 max_pending_rows: int = 100_000, maintenance: Maintenance | None = None):
        super().__init__(path, max_bytes, on_failure, maintenance=maintenance)
        self.max_pending_rows = max_pending_rows
        self._jobs: deque[LogBatch] = deque()
        # Not `_pending`: an older version reused that name of the base class's for this count, and the writer
        # thread died at the first rotation (issue 20).
        self._queued_rows = 0
        self._stopping = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, batch: LogBatch) -> bool:
        rows = len(batch)
        with self._ready:
            queued = not self._stopping and self._queued_rows + rows <= self.max_pending_rows
            if queued:
                self._jobs.append(batch)
                self._queued_rows += rows
                self._ready.notify()
        return True if queued else super().append(batch)

    def _drain(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._stopping:
                    self._ready.wait()
                if not self._jobs:
                    return
                batch = self._jobs.popleft()
            try:
                super().append(batch)
            except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any one batch's fault
                logger.exception("prediction-log writer thread: a batch of %d rows failed", len(batch))
                self._failed(exc)
            finally:
                with self._ready:
                    self._queued_rows -= len(batch)

    def close(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(timeout=60)
        super().close()


def log_files(path: Path) -> list[Path]:
    """One log's files oldest first (Arrow, Parquet and JSONL segments), then a JSONL version's live file."""
    return segments.family(Path(path))


def read_log(source: Path | str, stats: dict[str, int] | None = None) -> pd.DataFrame:
    """Every valid row of a log, a folder of logs or a glob, as one DataFrame (small logs and tests; jobs read
    windows through monitoring/logreader.py). Torn lines and batches are counted in `stats["skipped"]`."""
    try:
        reader = LogReader(source)
    except LogMissing:
        return pd.DataFrame()
    frame = to_frame(reader.table())
    if stats is not None:
        stats["skipped"] = stats.get("skipped", 0) + reader.skipped
    return frame


def iter_records(source: Path | str, stats: dict[str, int] | None = None) -> Iterator[dict]:
    """Every valid row as a dict (`ts` as an ISO string)."""
    frame = read_log(source, stats)
    if "ts" in frame.columns:
        frame["ts"] = [t.isoformat(timespec="microseconds") if pd.notna(t) else None for t in frame["ts"]]
    yield from frame.to_dict("records")
