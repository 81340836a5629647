"""One logged prediction by its id, through the log's one reader (monitoring/logreader.py).

Each segment is read with the id pushed down: a compacted (Parquet) segment skips every row group whose
prediction_id statistics cannot hold it (ids are UUIDv7, time-ordered, so a segment's row groups cover narrow id
ranges and almost all are skipped unread); an Arrow stream segment (a live one, at most PREDICTION_LOG_MAX_BYTES) is
memory-mapped and filtered, and a JSONL segment of an older version parsed by Arrow and filtered. Segments are
searched newest first and the search stops at the first that holds the id, so memory is one segment's matching rows,
and time grows with the number of segments (a footer each), not with the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from monitoring.logreader import LogMissing, LogReader, Where


@dataclass(frozen=True)
class LoggedPrediction:
    """A logged prediction: who answered it, when, on which inputs, with what probability."""

    prediction_id: str
    model_name: str
    model_version: str
    ts: datetime | None
    endpoint: str | None
    probability: float | None
    fields: dict[str, Any]  # the whole line, inputs included

    def inputs(self, columns: list[str]) -> dict[str, Any]:
        missing = [c for c in columns if self.fields.get(c) is None]
        if missing:
            raise ValueError(f"the logged prediction lacks input(s) {', '.join(missing)}")
        return {c: self.fields[c] for c in columns}


def find_prediction(source: Path | str, prediction_id: str) -> LoggedPrediction | None:
    """The primary (not shadow) prediction logged under `prediction_id`, or None when no segment holds it (or there
    is no log at all). Shadow lines carry their primary's id; they are never the answer."""
    try:
        reader = LogReader(source, compact=False)  # a lookup never compacts: that is the writer's or a job's work
    except LogMissing:
        return None
    where = Where(prediction_id=prediction_id)
    for path in reversed(reader.files):
        table = reader.read(path, None, where)
        if not table.num_rows:
            continue
        for row in table.to_pylist():
            if not row.get("shadow"):
                return LoggedPrediction(
                    prediction_id=prediction_id, model_name=row["model_name"], model_version=str(row["model_version"]),
                    ts=row.get("ts"), endpoint=row.get("endpoint"), probability=row.get("probability"), fields=row,
                )
    return None
