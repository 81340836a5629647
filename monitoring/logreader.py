"""The one reader of the prediction log, for every job (drift today; quality and shadow comparison next).

Columnar: compacted segments are Parquet, read with pyarrow with column projection and the model/time filter pushed
down to row-group statistics; segments not compacted yet are Arrow IPC streams, memory-mapped (monitoring/ipc.py),
and JSONL segments of older versions are parsed by Arrow's C++ JSON reader. A source is one log, a folder of logs
(one per server) or a glob (monitoring/segments.py). Sealed segments nobody compacted are compacted on the way.

Bounded memory: `read_window` reads the window in two passes, one segment at a time. The first pass reads only the
time and version columns to count the window's rows; when they exceed `max_rows`, a uniform random sample of row
positions is drawn (seeded), and the second pass reads the analysed columns of the sampled rows only. Memory is then
one segment plus the sample plus 8 bytes per window row, whatever the log's size.
"""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from monitoring import ipc
from monitoring.compaction import compact_pending, parse_jsonl
from monitoring.segments import ROTATED, SKIPPED_KEY, compacted_path, discover, is_compacted, is_stream, locked, read_all

DEFAULT_MAX_ROWS = 200_000
DEFAULT_SEED = 0
_TS = pa.timestamp("us", tz="UTC")


class LogMissing(FileNotFoundError):
    """No prediction log where the source points."""


@dataclass(frozen=True)
class Where:
    """A row filter on the log's own fields, pushed down to Parquet row groups."""

    model: str | None = None
    version: str | None = None
    since: datetime | None = None
    prediction_id: str | None = None  # one prediction: ids are time-ordered (UUIDv7), so row-group statistics prune

    def columns(self) -> set[str]:
        return {c for c, v in (("model_name", self.model), ("model_version", self.version), ("ts", self.since),
                               ("prediction_id", self.prediction_id)) if v is not None}

    def expression(self) -> pc.Expression | None:
        parts = []
        if self.model is not None:
            parts.append(pc.field("model_name") == self.model)
        if self.version is not None:
            parts.append(pc.field("model_version") == self.version)
        if self.since is not None:
            parts.append(pc.field("ts") >= pa.scalar(self.since, type=_TS))
        if self.prediction_id is not None:
            parts.append(pc.field("prediction_id") == self.prediction_id)
        expression = None
        for part in parts:
            expression = part if expression is None else expression & part
        return expression


class LogReader:
    """The segments of a source, each read projected and filtered, under a shared lock that keeps retention away."""

    def __init__(self, source: Path | str, *, compact: bool = True):
        self.source = source
        files = discover(source)
        if not files:
            raise LogMissing(f"no prediction log at {source}")
        self.files = compact_pending(files) if compact else files
        self.skipped = 0  # lines that did not parse, over every segment read (each segment counted once)
        self._counted: set[Path] = set()

    def read(self, path: Path, columns: list[str] | None = None, where: Where = Where()) -> pa.Table:
        """One segment's rows matching `where`, with the `columns` it has (all when None); an empty table when the
        segment vanished (retention deleted it, or it was compacted meanwhile and is read as Parquet instead)."""
        try:
            if is_compacted(path):
                return self._read_parquet(path, columns, where)
            if is_stream(path):
                return self._read_stream(path, columns, where)
            return self._read_jsonl(path, columns, where)
        except FileNotFoundError:
            compacted = compacted_path(path)
            if not is_compacted(path) and compacted.exists():
                return self._read_parquet(compacted, columns, where, counted_as=path)
            return pa.table({})

    def _count(self, path: Path, skipped: int) -> None:
        if path not in self._counted:
            self._counted.add(path)
            self.skipped += skipped

    def _read_parquet(self, path, columns, where, counted_as: Path | None = None) -> pa.Table:
        with locked(path, fcntl.LOCK_SH):
            schema = pq.read_schema(path)
            metadata = schema.metadata or {}
            self._count(counted_as or path, int(metadata.get(SKIPPED_KEY, b"0")))
            if not where.columns() <= set(schema.names):
                return pa.table({})
            wanted = schema.names if columns is None else [c for c in columns if c in schema.names]
            return pq.read_table(path, columns=wanted, filters=where.expression(), schema=schema)

    def _read_jsonl(self, path, columns, where) -> pa.Table:
        if not ROTATED.search(path.name):
            # No lock on the live segment: writers hold it exclusively for each append, and readers must not stall
            # them. A line being appended while we read shows as a partial last line, counted like a torn one.
            with open(path, "rb") as handle:
                data = handle.read()
        else:
            with locked(path, fcntl.LOCK_SH) as fd:
                data = read_all(fd)
        table, skipped = parse_jsonl(data)
        self._count(path, skipped)
        return _select(table, columns, where)

    def _read_stream(self, path, columns, where) -> pa.Table:
        table, skipped = read_stream_segment(path)
        self._count(path, skipped)
        return _select(table, columns, where)

    def table(self, columns: list[str] | None = None, *, model: str | None = None,
              since: datetime | None = None) -> pa.Table:
        """Every matching row of every segment, oldest segment first (for small logs and tests: not bounded)."""
        tables = [t for t in (self.read(p, columns, Where(model, since=since)) for p in self.files) if t.num_columns]
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables, promote_options="permissive")


def read_stream_segment(path: Path) -> tuple[pa.Table, int]:
    """An Arrow segment's rows and its torn batches (0 or 1). A sealed segment is read under a shared lock (retention
    keeps away); a live one without (its writer holds it), and a batch in flight at its end is not torn, only not
    there yet."""
    fd = os.open(path, os.O_RDONLY)
    try:
        sealed = ipc.is_sealed(fd)
        table, torn = ipc.read_stream(fd)
    finally:
        os.close(fd)
    return table, int(torn and sealed)


def _select(table: pa.Table, columns: list[str] | None, where: Where) -> pa.Table:
    """The rows of an in-memory segment matching `where`, projected to `columns` (those it has)."""
    if not where.columns() <= set(table.column_names):
        return pa.table({})
    if where.expression() is not None:
        table = table.filter(where.expression())
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table


def to_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    if "ts" in frame.columns:
        frame["ts"] = frame["ts"].astype("datetime64[ns, UTC]")  # pandas' usual unit, whatever Arrow's
    return frame


# ----------------------------------------------------------------------------------------- one model's window


@dataclass
class WindowRead:
    """The rows of one model version in a time window: all of them, or a uniform sample when there are more than
    `max_rows`; `rows` always counts the whole window."""

    frame: pd.DataFrame
    rows: int
    other_versions: dict[str, int] = field(default_factory=dict)
    skipped_lines: int = 0
    sampled: bool = False
    seed: int | None = None
    max_rows: int | None = None
    segments: int = 0


def read_window(
    source: Path | str, name: str, version: str, columns: list[str] | None = None, *, since: datetime | None = None,
    last: int | None = None, max_rows: int | None = DEFAULT_MAX_ROWS, seed: int = DEFAULT_SEED,
) -> WindowRead:
    """`columns` (None: all) of the rows of `name`:`version` logged since `since` (the last `last` of them), sorted
    by time.

    Raises LogMissing when the source holds no log."""
    reader = LogReader(source)
    by_model = Where(name, since=since)
    stamps: list[np.ndarray] = []
    held: dict[int, pa.Table] = {}  # segments not compacted are read once (a live one grows between passes)
    others: Counter[str] = Counter()
    for number, path in enumerate(reader.files):
        if is_compacted(path):
            table = reader.read(path, ["ts", "model_version"], by_model)
        else:
            table = reader.read(path, None if columns is None else sorted({"ts", "model_version", *columns}), by_model)
        if not table.num_rows:
            stamps.append(np.empty(0, dtype=np.int64))
            continue
        versions = table["model_version"].cast(pa.string())
        mine = pc.equal(versions, version).fill_null(False)
        others.update({str(v["values"]): int(v["counts"]) for v in
                       pc.value_counts(versions.filter(pc.invert(mine))).to_pylist()})
        table = table.filter(mine)
        stamps.append(table["ts"].cast(_TS).cast(pa.int64()).to_numpy(zero_copy_only=False))
        if not is_compacted(path):
            held[number] = table

    counts = np.array([len(s) for s in stamps], dtype=np.int64)
    total = int(counts.sum())
    chosen = np.arange(total)
    if last is not None and total > last:
        everything = np.concatenate(stamps) if stamps else np.empty(0, dtype=np.int64)
        chosen = np.sort(np.argsort(everything, kind="stable")[-last:])
    del stamps
    window_rows = len(chosen)
    sampled = max_rows is not None and window_rows > max_rows
    if sampled:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, size=max_rows, replace=False))

    starts = np.concatenate([[0], np.cumsum(counts)])
    parts = []
    by_version = Where(name, version, since)
    for number, path in enumerate(reader.files):
        lo, hi = np.searchsorted(chosen, [starts[number], starts[number + 1]])
        if lo == hi:
            continue
        local = chosen[lo:hi] - starts[number]
        table = held.pop(number) if number in held else reader.read(path, columns, by_version)
        local = local[local < table.num_rows]  # a segment retention deleted between the passes gives no rows
        if len(local):
            if columns is not None:
                table = table.select([c for c in columns if c in table.column_names])
            parts.append(table.take(pa.array(local)))
    frame = (
        to_frame(pa.concat_tables(parts, promote_options="permissive")) if parts
        else pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c == "ts" else object)
                           for c in (columns or ["ts", "model_version"])})
    )
    if "ts" in frame.columns and len(frame):
        frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    return WindowRead(
        frame=frame, rows=window_rows, other_versions=dict(others), skipped_lines=reader.skipped,
        sampled=bool(sampled), seed=seed if sampled else None, max_rows=max_rows, segments=len(reader.files),
    )
