"""The prediction log's upkeep, off the serving worker: sealed segments compacted into Parquet, then retention.

    python -m monitoring.maintenance --log "$STATE_DIR/prediction_log.jsonl" --once   # one pass (cron, a sidecar)
    python -m monitoring.maintenance --log "$STATE_DIR/prediction_log.jsonl"          # every 2 s until SIGTERM

A server's log starts this as a child process of each worker (`Maintenance(process=True)`, monitoring/predictlog.py):
the first to take the log's election lock (`<log>.maintenance.lock`) does the work and the others exit at once. It
runs at nice 10, so serving workers get the CPU first, and it exits when the worker that started it is gone (the
worker's restart starts the next one). Compaction of an Arrow segment parses nothing (monitoring/compaction.py);
before this process existed, the worker compacted JSONL segments on a thread of its own, and re-parsing them took
a quarter of its CPU under big batches (issue 21).

A pass also retires a live JSONL file left by a version that wrote JSON lines: it is renamed into a rotated JSONL
segment (under the old writers' rotation lock), so it is compacted and reaches retention like any segment.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from monitoring.compaction import compact
from monitoring.jsonlog import rotate_jsonl
from monitoring.retention import RetentionPolicy, enforce
from monitoring.segments import ROTATED, family, is_compacted, not_a_log

if TYPE_CHECKING:
    from settings import Settings

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
INTERVAL_S = 2.0


@dataclass(frozen=True)
class Maintenance:
    """What is done with a log's sealed segments, and where.

    `process`: a maintenance process compacts and applies retention while the log is written (a server).
    `finish_on_close`: closing the log compacts what is sealed and applies retention before it returns (a batch
    job, whose summary counts what it left on disk). Retention also runs in the writer at each rotation: a few stats
    and unlinks, so the byte bound holds under load."""

    compact: bool = True
    retention: RetentionPolicy | None = field(default_factory=RetentionPolicy)
    process: bool = False
    finish_on_close: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, *, job: bool = False) -> Maintenance:
        """A server's (a process while it serves, nothing left for its shutdown) or a batch job's (the same, and
        whatever is left done before the job exits)."""
        return cls(
            compact=settings.prediction_log_compact,
            retention=RetentionPolicy(settings.prediction_log_retention, settings.prediction_log_max_total_bytes),
            process=True, finish_on_close=job,
        )


@dataclass
class Pass:
    compacted: list[Path] = field(default_factory=list)
    waiting: list[Path] = field(default_factory=list)  # live or held: for a later pass


def run_pass(log: Path, maintenance: Maintenance) -> Pass:
    """Compact every sealed segment of `log` (when `maintenance.compact`), then apply retention. Never raises for
    one segment: a segment that cannot be compacted is logged and stays readable as it is."""
    log = Path(log)
    result = Pass()
    if not_a_log(log):
        return result
    if maintenance.compact:
        if log.is_file() and log.stat().st_size:
            rotate_jsonl(log)  # a JSONL version's live file, left behind: rotated like its writer would have
        for path in family(log):
            if path == log or is_compacted(path) or not ROTATED.search(path.name):
                continue
            try:
                (result.compacted if compact(path) else result.waiting).append(path)
            except Exception:  # noqa: BLE001 - the segment stays as it is, readable; the next pass tries again
                logger.exception("cannot compact prediction-log segment %s", path)
    if maintenance.retention is not None:
        try:
            enforce(log, maintenance.retention)
        except OSError as exc:
            logger.warning("prediction log retention on %s failed: %s", log, exc)
    return result


def election_lock(log: Path) -> Path:
    return log.with_name(log.name + ".maintenance.lock")


def serve(log: Path, maintenance: Maintenance, interval: float = INTERVAL_S, parent: int | None = None) -> int:
    """Passes every `interval` seconds until SIGTERM or the parent's exit, if this process wins the log's election."""
    problem = not_a_log(log)
    try:
        if problem:
            raise OSError(problem)
        log.parent.mkdir(parents=True, exist_ok=True)
        lock = open(election_lock(log), "a")
    except OSError as exc:  # the writer counts its own failures: a log it cannot write has nothing to maintain
        logger.warning("no maintenance for the prediction log %s: %s", log, exc)
        return 0
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another process maintains this log
        os.nice(10)  # serving workers first
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while True:
            run_pass(log, maintenance)
            if stop.wait(interval) or (parent is not None and os.getppid() != parent):
                return 0


class MaintenanceProcess:
    """The maintenance process a writer starts for its log (`python -m monitoring.maintenance`)."""

    def __init__(self, log: Path, maintenance: Maintenance, interval: float = INTERVAL_S):
        command = [sys.executable, "-m", "monitoring.maintenance", "--log", str(log), "--interval", str(interval),
                   "--parent", str(os.getpid())]
        if not maintenance.compact:
            command.append("--no-compact")
        if maintenance.retention is None:
            command.append("--no-retention")
        else:
            command += ["--retention-days", str(maintenance.retention.max_age_days),
                        "--max-total-bytes", str(maintenance.retention.max_total_bytes)]
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": path},
                                        stdin=subprocess.DEVNULL)
        self.owner = os.getpid()

    def stop(self, timeout: float = 30) -> None:
        """Ask it to finish its pass and exit; wait for it. (Not from a forked child: the process is its parent's.)"""
        if os.getpid() == self.owner and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.maintenance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, required=True, help="the log's path (PREDICTION_LOG_PATH)")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--interval", type=float, default=INTERVAL_S, help="seconds between passes")
    parser.add_argument("--parent", type=int, default=None, help="exit when this process is no longer the parent")
    parser.add_argument("--no-compact", action="store_true", help="retention only")
    parser.add_argument("--no-retention", action="store_true", help="compaction only")
    parser.add_argument("--retention-days", type=float, default=RetentionPolicy.max_age_days)
    parser.add_argument("--max-total-bytes", type=int, default=RetentionPolicy.max_total_bytes)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    retention = None if args.no_retention else RetentionPolicy(args.retention_days, args.max_total_bytes)
    maintenance = Maintenance(compact=not args.no_compact, retention=retention)
    if args.once:
        done = run_pass(args.log, maintenance)
        print(f"compacted {len(done.compacted)} segment(s); {len(done.waiting)} live or held")
        return 0
    return serve(args.log, maintenance, args.interval, args.parent)


if __name__ == "__main__":
    raise SystemExit(main())
