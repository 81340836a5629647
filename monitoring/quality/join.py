"""Predictions joined to their outcomes by prediction_id, at a busy day's scale in bounded memory.

Both are read through the one log reader (monitoring/logreader.py), so rotated, compacted and live segments all
count and torn lines are skipped. The outcomes are read first (each id's latest: the store appends in ingestion
order) and indexed by their ids' numeric keys (monitoring/quality/keys.py). The predictions are then read one
segment at a time, projected to the columns the job needs and filtered on time by the reader (pushed down to
Parquet row groups); each segment is reduced to four numbers per row before the next is read:
- `cell`: which (model, version, alias, variant, endpoint) served it, a small code into `Joined.cells`;
- `ts` (microseconds since the epoch, UTC) and `probability`;
- `outcome`: 0 or 1, or -1 while none has arrived.
So memory is one segment plus 21 bytes per prediction (about 210 MB for 10M), whatever the log's size.

Shadow predictions never reached a client, so no outcome names them: they are left out. A prediction id logged
twice (a log read twice through overlapping sources) joins its outcome once, on its last line; its earlier lines
are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from monitoring.logreader import LogMissing, LogReader, Where
from monitoring.quality.errors import QualityError
from monitoring.quality.keys import KeyIndex, keys_of, last_distinct

CELL_KEYS = ["model_name", "model_version", "alias", "variant", "endpoint"]
PREDICTION_COLUMNS = ["ts", "prediction_id", *CELL_KEYS, "shadow", "probability"]
OUTCOME_COLUMNS = ["prediction_id", "outcome"]
UNMATCHED_SHOWN = 20
NO_OUTCOME = -1
_SEPARATOR = "\x1f"  # joins a row's cell fields into one string that Arrow dictionary-encodes


@dataclass
class Joined:
    """The window's predictions that carry an id, one entry per prediction in each array, and what the join saw."""

    cells: pd.DataFrame  # indexed by cell code: model_name, model_version, alias, variant, endpoint (None if unset)
    cell: np.ndarray  # int32
    ts: np.ndarray  # int64, microseconds since the epoch (UTC)
    probability: np.ndarray  # float64
    outcome: np.ndarray  # int8: 0, 1, or NO_OUTCOME
    outcomes: int  # distinct ids with an outcome
    unmatched: int  # outcomes whose id is not among the window's predictions
    unmatched_examples: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    without_id: int = 0  # predictions logged before ids existed
    repeated_ids: int = 0  # earlier lines of an id logged twice, left out

    def __len__(self) -> int:
        return len(self.cell)


@dataclass
class _Outcomes:
    ids: pa.Array  # each distinct id once (its latest outcome), as stored
    values: np.ndarray  # int8
    index: KeyIndex
    skipped_lines: int


def _none_yet(skipped_lines: int) -> _Outcomes:
    ids = pa.array([], pa.string())
    return _Outcomes(ids, np.empty(0, np.int8), KeyIndex(keys_of(ids)), skipped_lines)


def read_outcomes(path: Path | str) -> _Outcomes:
    """Each id's latest outcome (the store appends in ingestion order), indexed by id; none yet (no store, or an
    empty one) is no error: the job then estimates quality without outcomes."""
    try:
        reader = LogReader(path)
    except LogMissing:
        return _none_yet(0)
    table = reader.table(OUTCOME_COLUMNS)
    if not table.num_rows or not set(OUTCOME_COLUMNS) <= set(table.column_names):
        return _none_yet(reader.skipped)
    table = table.filter(pc.is_valid(table["outcome"]))
    keys = keys_of(table["prediction_id"])
    latest = last_distinct(keys)
    ids = table["prediction_id"].take(pa.array(latest)).combine_chunks()
    values = table["outcome"].take(pa.array(latest)).to_numpy(zero_copy_only=False).astype(np.int8)
    index = KeyIndex(keys.take(latest))
    return _Outcomes(ids, values, index, reader.skipped)


class _Cells:
    """Codes for the (model, version, alias, variant, endpoint) combinations met so far."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def of(self, table: pa.Table) -> np.ndarray:
        fields = [table[c].cast(pa.string()) if c in table.column_names else pa.nulls(table.num_rows, pa.string())
                  for c in CELL_KEYS]
        joined = pc.binary_join_element_wise(*fields, _SEPARATOR, null_handling="replace", null_replacement="")
        encoded = pc.dictionary_encode(joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined)
        mapping = np.array([self.codes.setdefault(text, len(self.codes)) for text in encoded.dictionary.to_pylist()],
                           dtype=np.int32)
        return mapping[encoded.indices.to_numpy(zero_copy_only=False)] if len(mapping) else np.empty(0, np.int32)

    def frame(self) -> pd.DataFrame:
        rows = [[part or None for part in text.split(_SEPARATOR)] for text in self.codes]
        return pd.DataFrame(rows, columns=CELL_KEYS, index=pd.RangeIndex(len(rows), name="cell"))


def _served_with_id(table: pa.Table) -> tuple[pa.Table, int]:
    """The rows a client was answered with that carry an id, and how many carried none (one filter, or none)."""
    keep = None
    if "shadow" in table.column_names:
        keep = pc.invert(pc.fill_null(table["shadow"].cast(pa.bool_()), False))
    has_id = pc.is_valid(table["prediction_id"])
    served_without = pc.invert(has_id) if keep is None else pc.and_(keep, pc.invert(has_id))
    keep = has_id if keep is None else pc.and_(keep, has_id)
    if not pc.all(keep).as_py():  # copying every column costs more than asking
        table = table.filter(keep)
    return table, pc.sum(served_without.cast(pa.int64())).as_py() or 0


def join(log: Path | str, outcome_store: Path | str, since: datetime | None) -> Joined:
    outcomes = read_outcomes(outcome_store)
    try:
        reader = LogReader(log)
    except LogMissing:
        raise QualityError(f"no prediction log at {log}") from None
    cells = _Cells()
    parts: dict[str, list[np.ndarray]] = {"cell": [], "ts": [], "probability": [], "outcome": []}
    hit_rows: list[np.ndarray] = []  # the rows that named an outcome, and which (few: at most one per outcome)
    hit_outcomes: list[np.ndarray] = []
    without_id = rows = 0
    last_row = np.full(len(outcomes.values), -1, dtype=np.int64)  # the last prediction row naming each outcome
    for path in reader.files:
        table = reader.read(path, PREDICTION_COLUMNS, Where(since=since))
        if not table.num_rows or "probability" not in table.column_names:
            continue
        if "prediction_id" not in table.column_names:  # logged before ids existed
            table = table.append_column("prediction_id", pa.nulls(table.num_rows, pa.string()))
        table, missing = _served_with_id(table)
        without_id += missing
        if not table.num_rows:
            continue
        match = outcomes.index.positions(keys_of(table["prediction_id"]))
        hit = np.flatnonzero(match >= 0)
        np.maximum.at(last_row, match[hit], rows + hit)  # rows grow in read order: the maximum is the last line
        hit_rows.append(rows + hit)
        hit_outcomes.append(match[hit])
        outcome = np.full(table.num_rows, NO_OUTCOME, dtype=np.int8)
        outcome[hit] = outcomes.values[match[hit]]
        parts["outcome"].append(outcome)
        parts["cell"].append(cells.of(table))
        parts["ts"].append(pc.fill_null(table["ts"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), 0)
                           .to_numpy(zero_copy_only=False))
        parts["probability"].append(table["probability"].cast(pa.float64()).to_numpy(zero_copy_only=False))
        rows += table.num_rows
        del table
    empty = {"cell": np.int32, "ts": np.int64, "probability": np.float64, "outcome": np.int8}
    columns = {k: np.concatenate(v) if v else np.empty(0, empty[k]) for k, v in parts.items()}
    parts.clear()
    hits = np.concatenate(hit_rows) if hit_rows else np.empty(0, np.int64)
    repeated = hits[last_row[np.concatenate(hit_outcomes)] != hits] if hit_rows else hits
    if len(repeated):
        keep = np.ones(rows, dtype=bool)
        keep[repeated] = False
        columns = {k: v[keep] for k, v in columns.items()}
    unmatched = np.flatnonzero(last_row < 0)
    # Arrow's allocator keeps the segments' freed pages for reuse: give them back before the estimate's sorts need
    # the room (10M predictions: 200 MB of RSS).
    pa.default_memory_pool().release_unused()
    return Joined(
        cells=cells.frame(), cell=columns["cell"], ts=columns["ts"], probability=columns["probability"],
        outcome=columns["outcome"], outcomes=len(outcomes.values), unmatched=len(unmatched),
        unmatched_examples=outcomes.ids.take(pa.array(unmatched[:UNMATCHED_SHOWN])).to_pylist(),
        skipped_lines=reader.skipped + outcomes.skipped_lines, without_id=int(without_id),
        repeated_ids=len(repeated),
    )
