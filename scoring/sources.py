"""Input files read in chunks: CSV, a Parquet file or a folder of Parquet files.

Memory stays bounded by the chunk size whatever the file size: Parquet is read batch by batch through
`pyarrow.dataset`, CSV through pandas' chunked C reader. Each source also knows its columns *as read* (an Arrow
schema) before any row is read, so a missing column is a file-level error raised before anything is written, and
the output writers get one schema for every chunk.

CSV has no types, so every column is read as the text in the file, as Spark's CSV reader does too: validation
parses the model's columns (a value that is not a number goes to the rejects with a reason, it never fails the
file), rejects show exactly what the file held, and every other column is carried through unchanged (an
identifier like `007` survives). Only an empty field counts as missing: `NA` or `null` stay text. Parsing the
model's columns from text costs about a second per million rows more than Parquet: convert big, recurring CSV
inputs to Parquet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from training.validation import DataError

PARQUET_SUFFIXES = {".parquet", ".pq"}
CSV_SUFFIXES = {".csv", ".txt", ".gz"}


def input_format(path: Path) -> str:
    """`parquet` or `csv`, from the path as `training.data.read_table` decides it."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in PARQUET_SUFFIXES:
        return "parquet"
    if path.suffix.lower() in CSV_SUFFIXES:
        return "csv"
    raise DataError(f"{path}: expected a .csv or .parquet file or a folder of Parquet files")


@dataclass
class Source:
    """One input file or folder: its columns as read and a chunked reader."""

    path: Path
    format: str
    arrow_schema: pa.Schema
    total_rows: int | None  # known up front for Parquet (footer metadata); None for CSV

    @property
    def columns(self) -> list[str]:
        return self.arrow_schema.names

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """DataFrames of at most `chunk_rows` rows, in file order."""
        if self.format == "parquet":
            yield from self._parquet_chunks(chunk_rows)
        else:
            yield from self._csv_chunks(chunk_rows)

    def _parquet_chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        dataset = ds.dataset(self.path, format="parquet")
        # Small read-ahead: the default (16 batches x 4 files) would hold millions of rows in memory.
        batches = dataset.to_batches(batch_size=chunk_rows, batch_readahead=2, fragment_readahead=1)
        # Batches end at row-group and file boundaries; regroup them so every model call gets a full chunk.
        pending: list[pa.RecordBatch] = []
        held = 0
        for batch in batches:
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            held += batch.num_rows
            while held >= chunk_rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, chunk_rows).to_pandas()
                rest = table.slice(chunk_rows)
                pending, held = (rest.to_batches(), rest.num_rows)
        if held:
            yield pa.Table.from_batches(pending, schema=self.arrow_schema).to_pandas()

    def _csv_chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        reader = pd.read_csv(
            self.path, dtype=str, keep_default_na=False, na_values=[""], chunksize=chunk_rows, low_memory=False
        )
        with reader:
            try:
                yield from reader
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                # A malformed line (a stray quote, too many fields) leaves no row boundary to trust after it.
                raise DataError(f"{self.path}: cannot parse the CSV: {exc}") from exc


def open_source(path: str | Path) -> Source:
    """Inspect an input without reading its rows: format, columns as read, and row count when known."""
    path = Path(path)
    fmt = input_format(path)
    try:
        if fmt == "parquet":
            dataset = ds.dataset(path, format="parquet")
            if not dataset.files:
                raise DataError(f"{path}: the folder holds no Parquet files")
            rows = sum(fragment.metadata.num_rows for fragment in dataset.get_fragments())
            return Source(path, fmt, dataset.schema, rows)
        header = pd.read_csv(path, nrows=0)
    except (pa.ArrowInvalid, OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as {fmt}: {exc}") from exc
    return Source(path, fmt, pa.schema([(str(column), pa.string()) for column in header.columns]), None)
