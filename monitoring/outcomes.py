"""The outcome store: true outcomes of past predictions (POST /v1/feedback), in two parts that share one folder.

- **The log** (OUTCOME_LOG_PATH, JSONL): one line per stored outcome, appended by the JSON-lines writer the
  prediction log had before it wrote Arrow (`monitoring.jsonlog`): one `O_APPEND` write per request before the 200
  leaves, size-based rotation, a torn line isolated on a line of its own (and skipped by readers). The quality job
  reads it through monitoring/logreader.py (which may compact a rotated segment to Parquet). Line layout: ts (when
  it arrived), prediction_id, outcome (0/1), observed_at (when it happened, or null), correction (true when it
  replaced an earlier, different outcome for the same id).
- **The index** (`<log>.index.sqlite` beside it, SQLite in WAL mode): each id's latest outcome and when it
  arrived, keyed by the id's 16 bytes. It answers "new, duplicate or correction?" for a whole request in one
  query, from disk, in bounded memory (SQLite's page cache, OUTCOME_INDEX_CACHE_MB per process); an in-memory
  index of every outcome (about 150 bytes each, per worker) is what it replaced.

Idempotency across workers, restarts and servers on one host: a request's outcomes are classified, appended to
the log and upserted into the index inside one `BEGIN IMMEDIATE` transaction, SQLite's write lock, which every
process that opens the same index file shares (WAL needs one host: a network file system is not supported). So
file order is ingestion order and "the latest outcome" of an id is its last line. Should the log write succeed
and the commit fail, the client gets 503 and nothing is acknowledged; its retry appends the lines again, which
readers fold (the last line per id wins).

Retention, like the prediction log's: rotated log segments older than OUTCOME_RETENTION days go, then the oldest
until the log fits OUTCOME_MAX_TOTAL_BYTES (monitoring/retention.py); index entries older than OUTCOME_RETENTION
days (by arrival) are deleted too, a bounded batch at a time after a request (at most once a minute per process),
so the index on disk holds about OUTCOME_RETENTION days of outcomes and idempotency covers that window: an outcome
re-sent after it is stored again, as new. An index created beside an existing log (an upgrade) is filled from the
log once, by the first request.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from prometheus_client import Gauge

from monitoring.jsonlog import JsonlLog
from monitoring.logbatch import now_iso
from monitoring.logreader import LogMissing, LogReader
from monitoring.retention import RetentionPolicy, enforce

if TYPE_CHECKING:
    from settings import Settings

logger = logging.getLogger(__name__)

COLUMNS = ["ts", "prediction_id", "outcome", "observed_at", "correction"]
INDEX_SUFFIX = ".index.sqlite"
PRUNE_EVERY_S = 60.0
PRUNE_BATCH = 50_000  # index rows deleted per pass: a short write lock, never a day's worth at once
SEED_BATCH = 50_000

OUTCOME_LOG_BYTES = Gauge(
    "serving_outcome_log_bytes", "Bytes on disk of the outcome log (live and rotated segments)",
    multiprocess_mode="mostrecent",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (id BLOB PRIMARY KEY, outcome INTEGER NOT NULL, ts INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outcomes_ts ON outcomes (ts);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_UPSERT = ("INSERT INTO outcomes (id, outcome, ts) VALUES (?, ?, ?) "
           "ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, ts = excluded.ts")
_LOOKUP_CHUNK = 30_000  # bound parameters per SELECT (SQLite allows 32,766)


@dataclass(frozen=True)
class Outcome:
    prediction_id: str
    outcome: int
    observed_at: datetime | None = None


@dataclass
class Ingested:
    accepted: int = 0
    duplicates: int = 0
    corrections: int = 0
    # Positions (in the request) of the items that corrected an earlier outcome.
    corrected: list[int] = field(default_factory=list)


def id_bytes(prediction_id: str) -> bytes:
    """The index key: a UUID's 16 bytes (ids reach the store validated and lower-cased)."""
    return bytes.fromhex(prediction_id.replace("-", ""))


class OutcomeStore:
    """Appends outcomes durably and answers whether each is new, a duplicate or a correction."""

    def __init__(self, path: Path, max_bytes: int, on_failure=None, *, retention: RetentionPolicy | None = None,
                 cache_mb: int = 8):
        self.path = Path(path)
        self.index_path = self.path.with_name(self.path.name + INDEX_SUFFIX)
        self.retention = retention
        # Retention of the log runs here (with its own gauge), not in the writer.
        self.log = JsonlLog(self.path, max_bytes, on_failure=on_failure)
        self.cache_mb = cache_mb
        self._lock = threading.Lock()  # one request at a time per process; SQLite serializes the processes
        self._db: sqlite3.Connection | None = None
        self._pruned = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, on_failure=None) -> OutcomeStore:
        return cls(settings.outcome_log_path, settings.prediction_log_max_bytes, on_failure,
                   retention=RetentionPolicy(settings.outcome_retention, settings.outcome_max_total_bytes),
                   cache_mb=settings.outcome_index_cache_mb)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.index_path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 30000")  # waits out another process's request, never fails it at once
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # like the log: survives a killed process, not a power cut
            db.execute(f"PRAGMA cache_size = -{self.cache_mb * 1024}")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def ingest(self, outcomes: list[Outcome]) -> Ingested:
        """Store what is new; raises OSError when the store cannot be written (nothing is acknowledged then)."""
        with self._lock:
            try:
                result = self._ingest(self._connect(), outcomes)
            except sqlite3.Error as exc:
                raise OSError(f"the outcome index {self.index_path} cannot be written: {exc}") from exc
            self._maybe_prune()
        return result

    def _ingest(self, db: sqlite3.Connection, outcomes: list[Outcome]) -> Ingested:
        result = Ingested()
        keys = [id_bytes(item.prediction_id) for item in outcomes]
        db.execute("BEGIN IMMEDIATE")
        try:
            self._seed(db)
            known = self._lookup(db, keys)
            pending: dict[bytes, int] = {}
            lines: list[bytes] = []
            rows: list[tuple[bytes, int, int]] = []
            ts, now = now_iso(), int(time.time())
            for position, (key, item) in enumerate(zip(keys, outcomes)):
                previous = pending.get(key, known.get(key))
                if previous == item.outcome:
                    result.duplicates += 1
                    continue
                correction = previous is not None
                if correction:
                    result.corrections += 1
                    result.corrected.append(position)
                result.accepted += 1
                pending[key] = item.outcome
                rows.append((key, item.outcome, now))
                lines.append(orjson.dumps({
                    "ts": ts,
                    "prediction_id": item.prediction_id,
                    "outcome": item.outcome,
                    "observed_at": item.observed_at.isoformat() if item.observed_at else None,
                    "correction": correction,
                }))
            if lines and not self.log.write(b"\n".join(lines) + b"\n"):
                raise OSError(f"cannot append to the outcome store {self.path}")
            db.executemany(_UPSERT, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return result

    @staticmethod
    def _lookup(db: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, int]:
        known: dict[bytes, int] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            known.update(db.execute(f"SELECT id, outcome FROM outcomes WHERE id IN ({marks})", chunk).fetchall())
        return known

    def _seed(self, db: sqlite3.Connection) -> None:
        """Fill a new index from the log it sits beside (an upgrade from the in-memory index), once."""
        if db.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone():
            return
        try:
            reader = LogReader(self.path)
        except LogMissing:
            reader = None
        cutoff = self._cutoff()
        for path in reader.files if reader else []:
            table = reader.read(path, ["ts", "prediction_id", "outcome"])
            if not {"prediction_id", "outcome"} <= set(table.column_names):
                continue
            stamps = (table["ts"].cast("int64").to_pylist() if "ts" in table.column_names
                      else [None] * table.num_rows)
            rows = [(id_bytes(i), int(o), int(t // 1_000_000) if t is not None else int(time.time()))
                    for i, o, t in zip(table["prediction_id"].to_pylist(), table["outcome"].to_pylist(), stamps)
                    if i is not None and o is not None]
            rows = [row for row in rows if row[2] >= cutoff]
            for start in range(0, len(rows), SEED_BATCH):
                db.executemany(_UPSERT, rows[start:start + SEED_BATCH])  # file order: the last line per id wins
        db.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?)", (now_iso(),))

    def _cutoff(self) -> int:
        if self.retention is None:
            return 0
        return int(time.time() - self.retention.max_age_days * 86_400)

    def _maybe_prune(self) -> None:
        """Retention of the log's segments and of the index's entries; a failure is logged, never the request's."""
        if self.retention is None or time.monotonic() - self._pruned < PRUNE_EVERY_S:
            return
        self._pruned = time.monotonic()
        try:
            self.prune()
        except (OSError, sqlite3.Error) as exc:
            logger.warning("outcome store retention on %s failed: %s", self.path, exc)

    def prune(self, now: float | None = None) -> int:
        """Apply retention now: rotated log segments, then up to PRUNE_BATCH expired index entries; returns the
        index entries deleted."""
        if self.retention is None:
            return 0
        enforce(self.path, self.retention, now, gauge=OUTCOME_LOG_BYTES)
        cutoff = int((time.time() if now is None else now) - self.retention.max_age_days * 86_400)
        db = self._connect()
        deleted = db.execute(
            "DELETE FROM outcomes WHERE id IN (SELECT id FROM outcomes WHERE ts < ? ORDER BY ts LIMIT ?)",
            (cutoff, PRUNE_BATCH),
        ).rowcount
        return deleted

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        self.log.close()
