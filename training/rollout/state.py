"""A rollout's saved state and its decision record, kept with the model store beside the stage book, so the servers
(GET /v1/rollouts, the gauges), the CLI and a restarted controller all read the same thing:

    <model store>/.rollout-<task>.json       the task's current (or last) rollout: step, clock, baseline, gates
    <model store>/.rollout-<task>.lock       held by the rollout's controller for its whole life (flock)
    <model store>/.rollout-history.jsonl     every decision of every rollout with its evidence, append-only

The state is replaced atomically under the stage book's lock (read, change, write), so an `abort` from another
shell and the controller's tick never lose each other's change. One controller per task at a time: the lock is
taken without waiting, and a second controller is refused with one line naming the first one's pid.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import orjson

from training import stages
from training.rollout.plan import Plan

HISTORY_FILE = ".rollout-history.jsonl"
RUNNING = "running"
ENDED = ("promoted", "rolled_back", "aborted", "superseded")


@dataclass(frozen=True)
class GateView:
    """One gate's latest result: `state` is fail, hold, pass, better or n/a; `evidence` the numbers behind it."""

    gate: str
    state: str
    summary: str
    evidence: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutState:
    id: str
    task: str
    candidate: str  # name:version
    control: str  # name:version: production when the rollout started
    plan: Plan
    servers: tuple[str, ...]
    log: str  # prediction log source (a path, a folder or a glob)
    outcomes: str  # outcome store
    slo: dict  # the SLO settings at start (settings.rollout_slo)
    tick_seconds: float
    started: float
    status: str = RUNNING
    step: int = 0
    applied_revision: int | None = None  # the traffic plan revision that carries this step, once written
    step_written: float | None = None  # when it was written: the servers have ROLLOUT_APPLY_SECONDS to follow
    step_started: float | None = None  # when every server followed it: the step's clock starts
    baseline: dict | None = None  # the servers' metrics at step_started (training/rollout/evidence.py)
    canary_started: float | None = None  # quality evidence counts from here
    gates: tuple[GateView, ...] = ()
    verdict: str = "hold"  # pass, hold or fail: what the gate URL answers
    reason: str | None = None  # the last decision's reason
    updated: float = 0.0
    ended: float | None = None
    heartbeat: float | None = None
    controller_pid: int | None = None

    @property
    def current(self):
        return self.plan.steps[self.step]

    @property
    def active(self) -> bool:
        return self.status == RUNNING

    def as_dict(self) -> dict:
        return {**asdict(self), "plan": self.plan.as_dict(), "gates": [asdict(g) for g in self.gates]}

    @classmethod
    def from_dict(cls, data: dict) -> RolloutState:
        data = {**data, "plan": Plan.from_dict(data["plan"]), "servers": tuple(data["servers"]),
                "gates": tuple(GateView(**g) for g in data.get("gates", ()))}
        return cls(**data)

    def summary(self) -> dict:
        """What GET /v1/rollouts and the gauges show: no baseline counters."""
        data = self.as_dict()
        data.pop("baseline")
        step = self.current
        routed = self.active and step.kind == "canary" and self.applied_revision is not None
        data.update(step_name=step.name, step_kind=step.kind, weight=step.weight if routed else 0.0)
        return data


def state_path(task: str) -> Path:
    return stages.store_dir() / f".rollout-{task}.json"


def read(task: str) -> RolloutState | None:
    path = state_path(task)
    return RolloutState.from_dict(orjson.loads(path.read_bytes())) if path.exists() else None


def read_all() -> list[RolloutState]:
    """Every task's current or last rollout (a file that does not parse is skipped: a reader must not fail)."""
    states = []
    for path in sorted(stages.store_dir().glob(".rollout-*.json")):
        try:
            states.append(RolloutState.from_dict(orjson.loads(path.read_bytes())))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return states


def create(state: RolloutState) -> RolloutState:
    """Save a new rollout; ValueError when the task already has a running one."""
    with stages.locked():
        existing = read(state.task)
        if existing is not None and existing.active:
            raise ValueError(f"rollout {existing.id} of task {state.task} is still running "
                             f"(`python -m training.rollout abort --task {state.task}` stops it)")
        stages.write_atomically(state_path(state.task), state.as_dict())
    return state


def update(task: str, change: Callable[[RolloutState], RolloutState]) -> RolloutState:
    """Read, change and write the task's rollout under the stage book's lock; returns what was written."""
    with stages.locked():
        current = read(task)
        if current is None:
            raise LookupError(f"no rollout of task {task}")
        new = replace(change(current), updated=time.time())
        stages.write_atomically(state_path(task), new.as_dict())
    return new


class Busy(RuntimeError):
    """Another controller holds the rollout's lock."""


@contextmanager
def controller_lock(task: str) -> Iterator[None]:
    """Held for a controller's whole life; Busy at once when another process holds it."""
    with open(stages.store_dir() / f".rollout-{task}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            current = read(task)
            pid = current.controller_pid if current else None
            raise Busy(f"rollout {current.id if current else task} already has a controller (pid {pid})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def note(state: RolloutState, kind: str, **fields) -> dict:
    """Append one decision to the rollout history durably: what happened, at which step, with its evidence."""
    entry = {"ts": time.time(), "rollout": state.id, "task": state.task, "step": state.current.name, "kind": kind,
             **fields}
    with open(stages.store_dir() / HISTORY_FILE, "ab") as handle:
        handle.write(orjson.dumps(entry, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry


def history(task: str | None = None, rollout: str | None = None) -> list[dict]:
    path = stages.store_dir() / HISTORY_FILE
    if not path.exists():
        return []
    entries = []
    for line in path.read_bytes().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line (a killed writer)
        if (task is None or entry.get("task") == task) and (rollout is None or entry.get("rollout") == rollout):
            entries.append(entry)
    return entries
