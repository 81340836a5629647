"""The prediction log's files on disk: which files make up a log, and the compaction of a rotated JSONL segment
into Parquet.

One log (one writer's PREDICTION_LOG_PATH, say `prediction_log.jsonl`) is a family of files in one folder:
    prediction_log.jsonl                                   the live segment, appended to (JSONL)
    prediction_log.jsonl.20261123T101500123456.4242        a rotated segment not yet compacted (JSONL, immutable)
    prediction_log.jsonl.20261123T101500123456.4242.parquet  the same segment compacted (Parquet, immutable)
The rotation stamp sorts the segments oldest first. Compaction writes the Parquet file beside the JSONL segment,
then deletes the JSONL segment: a segment exists in one form or the other, never both for long.

Locks (advisory `flock` on the segment file itself): a writer holds LOCK_EX on the live segment while it appends;
compaction takes LOCK_EX on a rotated segment, so it waits out a writer that raced the rotation; readers hold
LOCK_SH on a segment while they read it, and retention (monitoring/retention.py) never deletes a segment it cannot
lock exclusively at once.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

PARQUET = ".parquet"
ROTATED = re.compile(r"\.\d{8}T\d{12}\.\d+(\.parquet)?$")
# Parse timestamps while reading the JSON: `ts` then filters and sorts as a timestamp, in Parquet too.
_JSON_OPTIONS = pajson.ParseOptions(
    explicit_schema=pa.schema([("ts", pa.timestamp("us", tz="UTC"))]), unexpected_field_behavior="infer"
)
ROW_GROUP_ROWS = 65_536
SKIPPED_KEY = b"prediction_log.skipped_lines"


def is_url(source: Path | str) -> bool:
    """A log named by URL (`hdfs://`, `s3a://`, `file://`): only the Spark engine reads those (monitoring/spark_window.py)."""
    return "://" in str(source)


def is_compacted(path: Path) -> bool:
    return path.name.endswith(PARQUET)


def family(live: Path) -> list[Path]:
    """One writer's segments oldest first, then its live file (when it exists)."""
    live = Path(live)
    prefix = live.name + "."
    segments = sorted(
        p for p in live.parent.glob(glob.escape(live.name) + ".*")
        if p.name.startswith(prefix) and ROTATED.search(p.name[len(live.name):])
    )
    return [*segments, *([live] if live.exists() else [])]


def discover(source: Path | str) -> list[Path]:
    """Every segment of the logs that `source` names: one log's live path (its rotated segments included), a folder
    (every log in it: one file per server on a shared volume) or a glob of either."""
    text = str(source)
    if glob.has_magic(text):
        files: list[Path] = []
        for match in sorted(glob.glob(text)):
            files += discover(match)
        return list(dict.fromkeys(files))
    path = Path(text)
    if path.is_dir():
        lives = {p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and _is_live(p)}
        orphans = {p for p in path.iterdir() if ROTATED.search(p.name) and not p.name.startswith(".")}
        files = []
        for live in sorted(lives):
            files += family(live)
        listed = set(files)
        return files + sorted(orphans - listed)  # segments whose live file is gone (a replica retired)
    return family(path)


def _is_live(path: Path) -> bool:
    return not ROTATED.search(path.name) and not path.name.endswith((".lock", ".tmp", PARQUET)) and (
        path.suffix == ".jsonl"
    )


def parse_jsonl(data: bytes) -> tuple[pa.Table, int]:
    """A JSONL segment as an Arrow table and the number of lines skipped (torn or not an object).

    Arrow's JSON reader parses the whole segment in C++; only a segment holding a bad line (a writer killed mid-line)
    takes the line-by-line path, which drops what does not parse and counts it."""
    try:
        return pajson.read_json(pa.py_buffer(data), parse_options=_JSON_OPTIONS), 0
    except pa.ArrowInvalid:
        pass
    good: list[bytes] = []
    skipped = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            valid = isinstance(orjson.loads(line), dict)
        except orjson.JSONDecodeError:
            valid = False
        if valid:
            good.append(line)
        else:
            skipped += 1
    if not good:
        return pa.table({"ts": pa.array([], pa.timestamp("us", tz="UTC"))}), skipped
    return pajson.read_json(pa.py_buffer(b"\n".join(good) + b"\n"), parse_options=_JSON_OPTIONS), skipped


@contextmanager
def locked(path: Path, kind: int = fcntl.LOCK_SH) -> Iterator[int]:
    """Open `path` and hold an advisory lock on it (FileNotFoundError when it is gone)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, kind)
        yield fd
    finally:
        os.close(fd)


def read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 26), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def compact(segment: Path) -> Path | None:
    """Rewrite a rotated JSONL segment as Parquet beside it and delete the JSONL; returns the Parquet path, or None
    when another process compacted it first. Rows are sorted by model and time, in row groups of 64k rows, so a
    reader's filter on model and time skips row groups by their statistics."""
    target = segment.with_name(segment.name + PARQUET)
    try:
        with locked(segment, fcntl.LOCK_EX) as fd:  # waits for a writer that raced the rotation to finish its line
            if not segment.exists():
                return None
            table, skipped = parse_jsonl(read_all(fd))
            write_segment(table, target, skipped)
            segment.unlink()
            return target
    except FileNotFoundError:
        return None
    finally:
        # Arrow's allocator keeps the freed pages of a segment's table (about 110 MiB resident for a 64 MiB segment)
        # for this thread's next allocation, which in a server comes one rotation later: hand them back now.
        pa.default_memory_pool().release_unused()


def write_segment(table: pa.Table, target: Path, skipped: int = 0) -> None:
    """Write a compacted segment atomically (a temporary file, fsync, rename): sorted by model and time, zstd."""
    if table.num_rows and {"model_name", "ts"} <= set(table.column_names):
        table = table.take(pc.sort_indices(table, [("model_name", "ascending"), ("ts", "ascending")]))
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), SKIPPED_KEY: str(skipped).encode()})
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, compression="zstd")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def compact_pending(files: list[Path]) -> list[Path]:
    """Compact the rotated JSONL segments among `files` (a reader's first read does this for segments whose writer
    died before compacting them); returns the list with each compacted segment replaced by its Parquet file. A
    segment that cannot be compacted here (a read-only log folder) stays JSONL and is read as such."""
    out = []
    for path in files:
        if ROTATED.search(path.name) and not is_compacted(path):
            try:
                path = compact(path) or path.with_name(path.name + PARQUET)
            except OSError as exc:
                logger.warning("cannot compact %s (read as JSONL): %s", path, exc)
        out.append(path)
    return out
