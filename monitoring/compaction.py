"""Compaction of a sealed segment into Parquet: sorted by model and time, zstd, row groups of 64k rows, so a reader's
filter on model and time skips row groups by their statistics, and the segment takes a seventh of its bytes.

An Arrow segment (monitoring/ipc.py) becomes Parquet without parsing anything: its columns are already typed. A JSONL
segment (from versions that wrote JSON lines, and the outcome store's) is parsed by Arrow's C++ JSON reader first.
Compaction runs where it does not compete with requests: in the log's maintenance process (monitoring/maintenance.py),
in a reader that finds sealed segments nobody compacted, and when a batch job closes its log.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from monitoring import ipc
from monitoring.segments import ROTATED, SKIPPED_KEY, compacted_path, is_compacted, is_stream, locked, read_all

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS = 65_536
# Parse timestamps while reading the JSON: `ts` then filters and sorts as a timestamp, in Parquet too.
_JSON_OPTIONS = pajson.ParseOptions(
    explicit_schema=pa.schema([("ts", pa.timestamp("us", tz="UTC"))]), unexpected_field_behavior="infer"
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


def compact(segment: Path) -> Path | None:
    """Rewrite a sealed segment (Arrow or JSONL) as Parquet beside it and delete it. Returns the Parquet path (also
    when another process compacted it first), or None when the segment is live or being read: try again later."""
    target = compacted_path(segment)
    try:
        # Without waiting: an Arrow segment's writer holds its lock until it seals it.
        with locked(segment, fcntl.LOCK_EX | fcntl.LOCK_NB) as fd:
            if not segment.exists():
                return target if target.exists() else None
            if is_stream(segment):
                table, torn = ipc.read_stream(fd)
                skipped = int(torn)
            else:
                table, skipped = parse_jsonl(read_all(fd))
            if table.num_rows or skipped:
                write_segment(table, target, skipped)
                written = os.fstat(fd)
                os.utime(target, ns=(written.st_atime_ns, written.st_mtime_ns))  # the time of its last row, for retention
            segment.unlink()
            return target if table.num_rows or skipped else None
    except BlockingIOError:
        return None
    except FileNotFoundError:
        return target if target.exists() else None
    finally:
        # Arrow's allocator keeps the freed pages of a segment's table (about 110 MiB resident for a 64 MiB JSONL
        # segment) for this thread's next allocation, which comes one rotation later: hand them back now.
        pa.default_memory_pool().release_unused()


def write_segment(table: pa.Table, target: Path, skipped: int = 0) -> None:
    """Write a compacted segment atomically (a temporary file, fsync, rename): sorted by model and time, zstd."""
    if not table.num_columns:
        table = pa.table({"ts": pa.array([], pa.timestamp("us", tz="UTC"))})
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
    """Compact the sealed segments among `files` (a reader finding segments nobody compacted yet: a writer that died,
    a log without a maintenance process); returns the list with each compacted segment replaced by its Parquet file
    and empty sealed segments dropped. A segment that is live, held, or cannot be compacted here (a read-only folder)
    stays as it is and is read as such."""
    out = []
    for path in files:
        if ROTATED.search(path.name) and not is_compacted(path):
            try:
                compacted = compact(path)
            except OSError as exc:
                logger.warning("cannot compact %s (read as it is): %s", path, exc)
                compacted = path
            if compacted is None and not path.exists():
                continue  # an empty segment, deleted
            path = compacted or path
        out.append(path)
    return out
