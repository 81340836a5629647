"""Arrow IPC stream segments: how the prediction log's writer appends record batches, and how readers read them.

A segment is one Arrow IPC stream (the schema message, then one record-batch message per scored batch) written by
one process only. Its writer holds an exclusive `flock` on it from creation until it seals it (end-of-stream marker,
close): a segment whose lock can be taken is sealed (its writer finished, rotated or died), and only sealed
segments are compacted or deleted. The kernel drops the lock of a killed process, so a SIGKILL seals too.

Each batch reaches the kernel in one `writev` before the writer returns (the schema travels with the first batch),
so a request answered after `write` has its rows in the file, SIGKILL or not. A process killed in the middle of a
write leaves a torn message at the end of its segment, which nobody appends to again: readers keep every whole
batch before it and count the torn tail once, as the JSONL reader counts a torn line.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from pathlib import Path

import pyarrow as pa

END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


class StreamSegment:
    """One open segment of this process, for one schema."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.schema = schema
        self.size = 0
        # Created under a hidden name and locked before it is renamed into the log's family: no reader or compactor
        # can see it unlocked (a compactor would take an empty unlocked segment for a dead writer's).
        hidden = path.with_name(f".{path.name}.tmp")
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(hidden, path)
        except BaseException:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self.fd: int | None = fd
        self._header: pa.Buffer | None = schema.serialize()

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one batch (and the schema before the first). An OSError leaves the segment unusable (its tail may
        be torn): the caller seals it without the end-of-stream marker."""
        assert self.fd is not None, "sealed"
        message = batch.serialize()  # before any byte is written: an Arrow error leaves the segment whole
        parts = [message] if self._header is None else [self._header, message]
        total = sum(part.size for part in parts)
        written = os.writev(self.fd, parts)
        if written < total:  # a regular file writes short only when it cannot write more (a full disk)
            rest = memoryview(b"".join(part.to_pybytes() for part in parts))[written:]
            while rest:
                rest = rest[os.write(self.fd, rest):]
        self._header = None
        self.size += total

    def seal(self, clean: bool = True) -> None:
        """Close the segment; `clean` writes the end-of-stream marker first. Closing drops the lock."""
        if self.fd is None:
            return
        try:
            if clean:
                os.write(self.fd, END_OF_STREAM)
        except OSError:
            pass  # readers end a stream at the end of its file too
        finally:
            os.close(self.fd)
            self.fd = None

    def abandon(self) -> None:
        """A forked child's copy: close it without writing (the parent's lock stays, it shares the descriptor)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def is_sealed(fd: int) -> bool:
    """Take a shared lock on an open segment when no writer holds it (kept until `fd` closes): True when sealed."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def read_stream(fd: int) -> tuple[pa.Table, bool]:
    """Every whole batch of an open segment as one table, and whether a torn message followed them. The file is
    memory-mapped (no copy; the mapping outlives `fd`); a live segment is read up to its size now, so a batch being
    written at its end shows as torn."""
    size = os.fstat(fd).st_size
    if not size:
        return pa.table({}), False
    return _batches(pa.py_buffer(mmap.mmap(fd, size, access=mmap.ACCESS_READ)))


def read_stream_bytes(data: bytes | pa.Buffer) -> tuple[pa.Table, bool]:
    """`read_stream` for a segment's bytes (the Spark engine gets them from Hadoop's file systems)."""
    return _batches(pa.py_buffer(data) if isinstance(data, bytes) else data)


def _batches(buffer: pa.Buffer) -> tuple[pa.Table, bool]:
    if not buffer.size:
        return pa.table({}), False
    try:
        reader = pa.ipc.open_stream(buffer)
    except (pa.ArrowInvalid, OSError):
        return pa.table({}), True  # not even a whole schema: a writer killed at its first write
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            return pa.Table.from_batches(batches, schema=reader.schema), False
        except (pa.ArrowInvalid, OSError):
            return pa.Table.from_batches(batches, schema=reader.schema), True
