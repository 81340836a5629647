"""Segment codes for millions of rows: each key column factorized once (pandas), time chunks by integer division,
a level's codes combined arithmetically. pandas' groupby().ngroup() over four string columns took half of the
estimate's time at 2M rows; this is a few passes of integer NumPy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

DENSE_LIMIT = 1 << 24  # combined key spaces up to this size are compacted with a bincount, beyond with np.unique
RUN_SHARE = 4  # runs of 4 rows on average or longer: factorize the runs (see factorize)


class Factorized:
    """The key columns of one frame, each factorized once on first use: integer codes per row and the distinct
    values in sorted order (None/NaN as a value of its own, last)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self._columns: dict[str, tuple[np.ndarray, pd.Index]] = {}

    def put(self, name: str, codes: np.ndarray, values: pd.Index) -> None:
        self._columns[name] = (codes, values)

    def __getitem__(self, name: str) -> tuple[np.ndarray, pd.Index]:
        if name not in self._columns:
            self._columns[name] = factorize(self.frame[name])
        return self._columns[name]


def factorize(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """pd.factorize, sorted, None/NaN a value of its own. A log's string columns come in runs (a request's rows
    share model, version, alias, variant): an object column with runs at least RUN_SHARE long factorizes its runs'
    first values only (one comparison pass instead of hashing every string: 1.4 s to 0.3 s of CPU at 10M rows)."""
    values = column.to_numpy()
    if values.dtype == object and values.size > 1:
        change = np.empty(values.size, dtype=bool)
        change[0] = True
        np.not_equal(values[1:], values[:-1], out=change[1:])
        starts = np.flatnonzero(change)
        if starts.size * RUN_SHARE <= values.size:
            codes, uniques = pd.factorize(values[starts], sort=True, use_na_sentinel=False)
            lengths = np.diff(np.append(starts, values.size))
            return np.repeat(_narrow(codes, len(uniques)), lengths), pd.Index(uniques)
    codes, uniques = pd.factorize(values, sort=True, use_na_sentinel=False)
    return _narrow(codes, len(uniques)), pd.Index(uniques)


def _narrow(codes: np.ndarray, size: int) -> np.ndarray:
    """Codes in the smallest integer type that holds them: they are kept for every level (10M rows: 10 MB, not 80)."""
    return codes.astype(np.min_scalar_type(max(size - 1, 0)), copy=False)


def chunk_codes(ts: pd.Series, chunk: str) -> tuple[np.ndarray, pd.Index]:
    """Each row's `chunk`-long period (a pandas duration: 15min, 1h, 1D; periods start at multiples of it since the
    epoch, as pandas' floor does) and the periods' starts (UTC); ValueError for anything else."""
    try:
        length = pd.Timedelta(chunk)
    except ValueError:
        raise ValueError(f"chunk {chunk!r} is not a duration such as 15min, 1h or 1D") from None
    if length <= pd.Timedelta(0):
        raise ValueError(f"chunk {chunk!r} must be longer than zero")
    ns = pd.to_datetime(ts, utc=True).to_numpy(dtype="datetime64[ns]").view(np.int64)
    step = length.value
    if not ns.size:
        return np.zeros(0, dtype=np.int64), pd.DatetimeIndex([], tz="UTC")
    first = ns.min() // step * step
    codes = (ns - first) // step
    starts = pd.DatetimeIndex(first + np.arange(int(codes.max()) + 1, dtype=np.int64) * step, tz="UTC")
    return _narrow(codes, len(starts)), starts


def segment_codes(columns: Factorized, names: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """One integer per row naming its segment (its values of the `names` columns), and the segments' values in
    code order (sorted by the columns, left to right), as groupby(sort=True) would give them."""
    parts = [columns[name] for name in names]
    sizes = [len(values) for _, values in parts]
    combined = np.zeros(len(columns.frame), dtype=np.int64)
    for (codes, _), size in zip(parts, sizes):
        combined *= size
        combined += codes
    space = int(np.prod(sizes, dtype=np.float64))
    if space <= DENSE_LIMIT:
        used = np.bincount(combined, minlength=space) > 0
        present = np.flatnonzero(used)
        remap = np.cumsum(used) - 1
        segment = remap[combined]
    else:
        present, segment = np.unique(combined, return_inverse=True)
    keys = {}
    for name, (_, values), size in zip(reversed(names), reversed(parts), reversed(sizes)):
        keys[name] = values[present % size]
        present = present // size
    return segment.astype(np.int64, copy=False), pd.DataFrame({n: keys[n] for n in names})
