"""The prediction log's files on disk: which files make up a log, how they are named, and their locks.

One log (a server's PREDICTION_LOG_PATH, say `prediction_log.jsonl`) is a family of files in one folder:
    prediction_log.jsonl.20261123T101500123456.4242.arrows   a segment of process 4242 (Arrow IPC stream)
    prediction_log.jsonl.20261123T101500123456.4242.parquet  a segment compacted (Parquet, immutable)
and, from versions that wrote JSON lines (still read, never written):
    prediction_log.jsonl                                     the live JSONL file of a server
    prediction_log.jsonl.20261123T101500123456.4242          a rotated JSONL segment not yet compacted
The stamp sorts the segments oldest first (an Arrow segment's stamp is when it was opened, a JSONL one's when it
was rotated). Compaction writes the Parquet file beside a segment, then deletes the segment: should a listing
catch both, the Parquet file stands for them (monitoring/compaction.py writes it whole before the delete).

Locks (advisory `flock` on the segment file itself): the writer of an Arrow segment holds LOCK_EX on it until it
seals it (monitoring/ipc.py); compaction takes LOCK_EX without waiting, so it only ever takes sealed segments;
readers hold LOCK_SH on a sealed segment while they read it, and retention (monitoring/retention.py) never deletes
a segment it cannot lock exclusively at once. JSONL writers held LOCK_EX only for each append.
"""

from __future__ import annotations

import fcntl
import glob
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARQUET = ".parquet"
ARROWS = ".arrows"
ROTATED = re.compile(r"\.\d{8}T\d{12}\.\d+(\.parquet|\.arrows)?$")
SKIPPED_KEY = b"prediction_log.skipped_lines"


def is_url(source: Path | str) -> bool:
    """A log named by URL (`hdfs://`, `s3a://`, `file://`): only the Spark engine reads those (monitoring/spark_window.py)."""
    return "://" in str(source)


def is_compacted(path: Path) -> bool:
    return path.name.endswith(PARQUET)


def is_stream(path: Path) -> bool:
    """An Arrow IPC stream segment (monitoring/ipc.py)."""
    return path.name.endswith(ARROWS)


def compacted_name(name: str) -> str:
    """A segment's Parquet name: `X.arrows` -> `X.parquet`, a rotated JSONL `X` -> `X.parquet`."""
    return name.removesuffix(ARROWS) + PARQUET


def compacted_path(segment: Path) -> Path:
    return segment.with_name(compacted_name(segment.name))


def whole(names: list[str]) -> list[str]:
    """Sorted file names (or URIs), each segment once: a segment whose Parquet form is listed too is being
    compacted, and that Parquet file stands for it (compaction writes it whole before deleting the segment)."""
    listed = {name.rsplit("/", 1)[-1] for name in names}
    return sorted(n for n in names if n.endswith(PARQUET) or compacted_name(n.rsplit("/", 1)[-1]) not in listed)


def not_a_log(path: Path) -> str | None:
    """Why `path` cannot name a log (its segments and lock files go beside it), or None: it names a device or a
    folder (PREDICTION_LOG_PATH=/dev/full must not fill /dev with segments)."""
    if path.exists() and not path.is_file():
        return f"{path} names a device or a folder, not a log"
    return None


def log_of(segment: Path) -> Path:
    """The log a segment belongs to: its name without the stamp, pid and suffix."""
    return segment.with_name(ROTATED.sub("", segment.name))


def segment_path(live: Path, stamp: str, pid: int) -> Path:
    """A new Arrow segment's name in the family of `live` (`stamp`: UTC `%Y%m%dT%H%M%S%f`)."""
    return live.with_name(f"{live.name}.{stamp}.{pid}{ARROWS}")


def family(live: Path) -> list[Path]:
    """One log's segments oldest first, then its live JSONL file (when a version that wrote JSONL left one)."""
    live = Path(live)
    prefix = live.name + "."
    segments = [
        p for p in live.parent.glob(glob.escape(live.name) + ".*")
        if p.name.startswith(prefix) and ROTATED.search(p.name[len(live.name):])
    ]
    return [*_whole(segments), *([live] if live.exists() else [])]


def _whole(paths: list[Path]) -> list[Path]:
    return [Path(p) for p in whole([str(p) for p in paths])]


def discover(source: Path | str) -> list[Path]:
    """Every segment of the logs that `source` names: one log's path (its segments included), a folder (every log
    in it: one per server on a shared volume) or a glob of either."""
    text = str(source)
    if glob.has_magic(text):
        # What the glob matches, and the logs whose segments it names (an Arrow log has no file of its own name).
        named = {log_of(Path(p)) for p in glob.glob(text + ".*") if ROTATED.search(p)}
        files: list[Path] = []
        for match in sorted({*map(Path, glob.glob(text)), *named}):
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
        # Segments without a live JSONL file: every log the Arrow writer wrote, and a retired replica's segments.
        return files + _whole(list(orphans - listed))
    return family(path)


def _is_live(path: Path) -> bool:
    return not ROTATED.search(path.name) and not path.name.endswith((".lock", ".tmp", PARQUET, ARROWS)) and (
        path.suffix == ".jsonl"
    )


@contextmanager
def locked(path: Path, kind: int = fcntl.LOCK_SH) -> Iterator[int]:
    """Open `path` and hold an advisory lock on it (FileNotFoundError when it is gone; BlockingIOError when `kind`
    has LOCK_NB and someone holds a conflicting lock)."""
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
