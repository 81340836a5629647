"""Retention of the prediction log: segments older than PREDICTION_LOG_RETENTION days go, then the oldest segments
go until the log fits PREDICTION_LOG_MAX_TOTAL_BYTES. A live segment is never deleted (its writer holds its lock),
nor a segment a reader holds (readers keep a shared lock on a segment while they read it; retention skips any
segment it cannot lock exclusively at once and tries again later), nor the live JSONL file of an older version.

A writer runs it at each rotation (monitoring/predictlog.py), and the maintenance process after each pass
(monitoring/maintenance.py), so the bound holds under load with at most the open segments' growth above it. Each
server manages its own log's segments only: on a shared folder one server never deletes another's files.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Counter, Gauge

from monitoring.segments import family

logger = logging.getLogger(__name__)

LOG_BYTES = Gauge(
    "serving_prediction_log_bytes", "Bytes on disk of this server's prediction log (live and rotated segments)",
    multiprocess_mode="mostrecent",
)
SEGMENTS_DELETED = Counter(
    "serving_prediction_log_segments_deleted", "Prediction-log segments deleted by retention", ["reason"]
)


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_days: float = 30.0
    max_total_bytes: int = 10 * 1024**3


@dataclass
class RetentionResult:
    bytes_on_disk: int
    deleted: list[tuple[Path, str]] = field(default_factory=list)  # (segment, "age" | "size")
    kept_held: list[Path] = field(default_factory=list)  # over a limit but held by a reader


def _try_delete(path: Path) -> bool | None:
    """Delete a segment nobody holds: True when deleted, False when a reader holds it, None when already gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        return True
    finally:
        os.close(fd)


def enforce(live: Path, policy: RetentionPolicy, now: float | None = None, *, gauge: Gauge = LOG_BYTES
            ) -> RetentionResult:
    """Apply the policy to one log (`live` and its segments), oldest segments first: by their last write (a
    segment's modification time, which compaction keeps), since each writer process has segments of its own and one
    opened long ago may hold the newest rows. `gauge` gets its bytes on disk (the outcome log,
    monitoring/outcomes.py, has a gauge of its own)."""
    live = Path(live)
    now = time.time() if now is None else now
    sizes: dict[Path, tuple[int, float]] = {}
    for path in family(live):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        sizes[path] = (stat.st_size, stat.st_mtime)
    total = sum(size for size, _ in sizes.values())
    result = RetentionResult(bytes_on_disk=total)
    cutoff = now - policy.max_age_days * 86_400
    for path, (size, mtime) in sorted(sizes.items(), key=lambda item: (item[1][1], item[0].name)):
        if path == live:
            continue
        reason = "age" if mtime < cutoff else "size" if total > policy.max_total_bytes else None
        if reason is None:
            continue  # segments are oldest first: a newer one is neither older nor needed to fit
        deleted = _try_delete(path)
        if deleted is False:
            result.kept_held.append(path)
            continue
        total -= size
        if deleted:
            result.deleted.append((path, reason))
            SEGMENTS_DELETED.labels(reason).inc()
    result.bytes_on_disk = total
    gauge.set(total)
    if result.deleted:
        logger.info("prediction log retention deleted %d segment(s) of %s; %d bytes on disk",
                    len(result.deleted), live, total)
    return result
