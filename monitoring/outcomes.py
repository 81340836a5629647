"""The outcome store: true outcomes of past predictions (POST /v1/feedback), one JSON line each, beside the
prediction log and with its guarantees.

Lines are appended by the JSON-lines writer the prediction log had before it wrote Arrow (`monitoring.jsonlog`): one
`O_APPEND` write per request before the 200 leaves, size-based rotation, a torn line isolated on a line of its own (and
skipped by readers). No retention and no compaction run from the writer: outcomes are small and the quality job
needs all of them (a reader may still compact a rotated segment to Parquet; the index below reads both forms).

Line layout: ts (when it arrived), prediction_id, outcome (0/1), observed_at (when it happened, or null),
correction (true when it replaced an earlier, different outcome for the same id).

Idempotency across workers and restarts: ingestion holds an exclusive lock (`<path>.ingest.lock`) while it
catches its in-memory index up with what other workers appended, classifies the request's items against it
(new, duplicate, correction) and appends the new lines. Appends happen only under that lock, so file order is
ingestion order and "the latest outcome" of an id is its last line.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from monitoring.jsonlog import JsonlLog
from monitoring.logbatch import now_iso
from monitoring.segments import PARQUET, family

COLUMNS = ["ts", "prediction_id", "outcome", "observed_at", "correction"]


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


class OutcomeStore:
    """Appends outcomes durably and answers whether each is new, a duplicate or a correction."""

    def __init__(self, path: Path, max_bytes: int, on_failure=None):
        self.path = Path(path)
        self.log = JsonlLog(self.path, max_bytes, on_failure=on_failure)
        self.lock_path = self.path.with_name(self.path.name + ".ingest.lock")
        self.known: dict[str, int] = {}  # prediction_id -> latest outcome
        self._done: set[str] = set()  # rotated segments read to their end (by JSONL name)
        self._live: tuple[int, int] | None = None  # (inode, bytes read) of the live file

    def ingest(self, outcomes: list[Outcome]) -> Ingested:
        """Store what is new; raises OSError when the store cannot be written (nothing is acknowledged then)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        result = Ingested()
        lines: list[bytes] = []
        ts = now_iso()
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._catch_up()
            pending: dict[str, int] = {}
            for position, item in enumerate(outcomes):
                previous = pending.get(item.prediction_id, self.known.get(item.prediction_id))
                if previous == item.outcome:
                    result.duplicates += 1
                    continue
                correction = previous is not None
                if correction:
                    result.corrections += 1
                    result.corrected.append(position)
                result.accepted += 1
                pending[item.prediction_id] = item.outcome
                lines.append(orjson.dumps({
                    "ts": ts,
                    "prediction_id": item.prediction_id,
                    "outcome": item.outcome,
                    "observed_at": item.observed_at.isoformat() if item.observed_at else None,
                    "correction": correction,
                }))
            if lines and not self.log.write(b"\n".join(lines) + b"\n"):
                raise OSError(f"cannot append to the outcome store {self.path}")
            self.known.update(pending)
            self._skip_own_write()
        return result

    def _skip_own_write(self) -> None:
        # What we just appended is already in `known`: move the read position past it (we hold the lock, and
        # the write may have rotated the file: the next catch-up then finds it among the rotated segments).
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return
        if self._live is not None and self._live[0] == stat.st_ino:
            self._live = (stat.st_ino, stat.st_size)

    def _catch_up(self) -> None:
        """Apply every line appended since the last call, across rotations, oldest first."""
        for path in family(self.path):
            if path == self.path:
                continue
            name = path.name[: -len(PARQUET)] if path.name.endswith(PARQUET) else path.name
            if name in self._done:
                continue
            if path.name.endswith(PARQUET):
                self._apply_pairs(pq.read_table(path, columns=["prediction_id", "outcome"]).to_pydict())
            else:
                start = 0
                if self._live is not None and os.stat(path).st_ino == self._live[0]:
                    start = self._live[1]  # the live file we were reading, rotated since
                self._apply_lines(_read_from(path, start)[0])
            self._done.add(name)
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            self._live = None
            return
        start = self._live[1] if self._live is not None and self._live[0] == inode else 0
        data, end = _read_from(self.path, start)
        self._apply_lines(data)
        self._live = (inode, end)

    def _apply_lines(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            try:
                record = orjson.loads(line)
                self.known[record["prediction_id"]] = int(record["outcome"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a torn line (a killed writer) or a blank one: readers skip it too

    def _apply_pairs(self, columns: dict) -> None:
        for prediction_id, outcome in zip(columns["prediction_id"], columns["outcome"]):
            self.known[prediction_id] = int(outcome)

    def close(self) -> None:
        self.log.close()


def _read_from(path: Path, start: int) -> tuple[bytes, int]:
    """The whole lines of `path` from byte `start`, and the offset after the last whole line."""
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    return data[:end], start + end
