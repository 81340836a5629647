"""The stage book: which model version holds each stage of each task, and the audit history of every move.

Both live as plain files inside the BentoML model store's folder, so they travel with the store and every server
sharing the store sees the same aliases:

    <model store>/.lifecycle-stages.json     {"purchase": {"production": "purchase_gbm:v1", ...}, ...}
    <model store>/.lifecycle-history.jsonl   one audit record per promotion or rollback, append-only

(Files, not a folder: BentoML lists every sub-folder of the store as a model.) Every change happens under an
advisory lock on `.lifecycle.lock`; the book is replaced atomically (write, fsync, rename) and each history record
reaches the disk (fsync) before the move returns. `archived` is the stage of versions that hold none: it is not
exclusive, so it is not kept in the book.

A task the book has never seen (a store trained before the book existed) starts from the `stage` labels the
training run wrote: the newest version carrying each label holds that stage.

The book's other half, each task's traffic (canary weights, shadow models) and the references every server loads
or unloads, is training/traffic.py: its own file, changed under the same lock and audited in the same history.
"""

from __future__ import annotations

import fcntl
import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import bentoml
import orjson

import settings  # noqa: F401  (sets the do-not-track variables before bentoml is used)

STAGES_FILE = ".lifecycle-stages.json"
HISTORY_FILE = ".lifecycle-history.jsonl"
LOCK_FILE = ".lifecycle.lock"
ARCHIVED = "archived"


def store_dir() -> Path:
    """The model store's folder: `$BENTOML_HOME/models`, BentoML's documented layout (BENTOML_HOME defaults to
    ~/bentoml; tests/fast/test_bentoml_contract.py checks that BentoML saves models there)."""
    home = os.path.expandvars(os.environ.get("BENTOML_HOME") or os.path.join("~", "bentoml"))
    path = Path(home).expanduser() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Move:
    """One audit record: `to_version` took `stage` of `task` from `from_version` (None when the stage was empty).

    Traffic changes (training/traffic.py) are audited here too: `traffic` holds the new weights and shadow models
    (None when the task's traffic went back to the servers' own settings), `reference` a loaded or unloaded model."""

    ts: str
    user: str
    action: str  # "promote", "rollback", "retire", "traffic", "load" or "unload"
    task: str | None
    stage: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    demoted_to: str | None = None
    reason: str | None = None
    traffic: dict | None = None
    reference: str | None = None


def record(action: str, task: str | None, **fields) -> Move:
    """An audit record stamped now, by the user the environment names (LOGNAME, USER, LNAME or USERNAME)."""
    return Move(datetime.now(timezone.utc).isoformat(timespec="seconds"), getpass.getuser(), action, task, **fields)


def append_history(move_: Move) -> None:
    """Append one audit record durably (fsync); call under `locked()`."""
    with open(store_dir() / HISTORY_FILE, "ab") as handle:
        handle.write(orjson.dumps(asdict(move_)) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_atomically(path: Path, data: dict) -> None:
    """Replace `path` with `data` as JSON: a temporary file, fsync, rename (readers see the old or the new whole)."""
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@contextmanager
def locked() -> Iterator[None]:
    with open(store_dir() / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _from_labels(task: str, exclude: str | None = None) -> dict[str, str]:
    """The initial stages of a task the book has not seen: from the newest version carrying each stage label
    (but `exclude`, the version being promoted, whose label is what it is about to get, not what it holds)."""
    newest: dict[str, tuple[datetime, str]] = {}
    for model in bentoml.models.list():
        labels = model.info.labels
        if str(model.tag) == exclude:
            continue
        stage = labels.get("stage")
        if labels.get("task") != task or not stage or stage == ARCHIVED:
            continue
        created = model.info.creation_time
        if stage not in newest or created > newest[stage][0]:
            newest[stage] = (created, str(model.tag))
    return {stage: tag for stage, (_, tag) in newest.items()}


def _read_book() -> dict[str, dict[str, str]]:
    path = store_dir() / STAGES_FILE
    return orjson.loads(path.read_bytes()) if path.exists() else {}


def _write_book(book: dict[str, dict[str, str]]) -> None:
    write_atomically(store_dir() / STAGES_FILE, book)


def stages_of(task: str) -> dict[str, str]:
    """{stage: tag} for one task."""
    book = _read_book()
    return dict(book[task]) if task in book else _from_labels(task)


def holder(task: str, stage: str) -> str | None:
    return stages_of(task).get(stage)


def aliases_of(tag: str, task: str) -> list[str]:
    """The aliases (`task@stage`) that name this concrete tag now."""
    return [f"{task}@{stage}" for stage, held in sorted(stages_of(task).items()) if held == tag]


def move(task: str, tag: str, stage: str, *, demote_to: str = ARCHIVED, reason: str | None = None,
         action: str = "promote") -> Move:
    """Give `stage` of `task` to `tag`, demote its previous holder to `demote_to`, and record the move.

    The version leaves any other stage it held (a version holds one stage at a time); a previous holder demoted
    to a real stage displaces that stage's holder, which is archived. The caller has checked the model itself.
    """
    with locked():
        book = _read_book()
        stages = dict(book[task]) if task in book else _from_labels(task, exclude=tag)
        previous = stages.get(stage)
        stages = {s: t for s, t in stages.items() if t != tag}
        if stage != ARCHIVED:
            stages[stage] = tag
        demoted = None
        if previous is not None and previous != tag:
            demoted = demote_to
            if demote_to != ARCHIVED:
                stages = {s: t for s, t in stages.items() if t != previous}
                stages[demote_to] = previous
        book[task] = stages
        moved = record(action, task, stage=stage, from_version=previous, to_version=tag, demoted_to=demoted,
                       reason=reason)
        _write_book(book)
        append_history(moved)
    return moved


def retire(task: str, tag: str, *, reason: str, action: str = "retire") -> Move | None:
    """Take every stage `tag` holds from it (it is archived), and record it; None when it held none."""
    with locked():
        book = _read_book()
        stages = dict(book[task]) if task in book else _from_labels(task)
        held = sorted(stage for stage, holder_ in stages.items() if holder_ == tag)
        if not held:
            return None
        book[task] = {stage: holder_ for stage, holder_ in stages.items() if holder_ != tag}
        moved = record(action, task, stage=",".join(held), from_version=tag, demoted_to=ARCHIVED, reason=reason)
        _write_book(book)
        append_history(moved)
    return moved


def history(task: str | None = None) -> list[Move]:
    """Every move, oldest first (of one task when given); a torn last line is skipped."""
    path = store_dir() / HISTORY_FILE
    if not path.exists():
        return []
    moves = []
    for line in path.read_bytes().splitlines():
        try:
            move_ = Move(**orjson.loads(line))
        except (orjson.JSONDecodeError, TypeError):
            continue
        if task is None or move_.task == task:
            moves.append(move_)
    return moves


def previous_holder(task: str, stage: str) -> str | None:
    """The version that held `stage` before its current holder got it: what a rollback restores."""
    current = holder(task, stage)
    for record in reversed(history(task)):
        if record.stage == stage and record.to_version == current and record.from_version != current:
            return record.from_version
    return None


def why_held(task: str, stage: str, tag: str) -> str | None:
    """How `tag` came to hold `stage`: the last audit record that gave it ("rollback by alice: ..."), for log lines."""
    for moved in reversed(history(task)):
        if moved.stage == stage and moved.to_version == tag:
            return f"{moved.action} by {moved.user}" + (f": {moved.reason}" if moved.reason else "")
    return None
