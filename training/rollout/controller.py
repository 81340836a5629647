"""The rollout's controller: one process per rollout, looking every ROLLOUT_TICK_SECONDS and deciding.

A tick reads the saved state, checks that the stage book still says what the rollout started from (production is
the control, the candidate is the candidate; anything else ends it as `superseded`), and runs the current step:
- replay: monitoring.replay on the control's logged traffic, one look; its gate passes or rolls back.
- shadow and canary: the step's traffic is written to the stage book's traffic plan (training/traffic.py; the
  control and the candidate by their exact versions), then the clock waits until every server follows it
  (`serving_traffic_revision` on its /metrics, and the candidate's exact version loaded): the step's baseline is
  the servers' counters at that moment. Each tick then evaluates the gates on the counters since the baseline and
  decides (`decide`): roll back, advance, or hold.
- production: the audited promotion (the candidate takes production; control is archived) and the traffic plan
  goes back to the servers' own settings.
Rollback: the traffic plan goes back to the servers' own settings (production only), then the candidate leaves its
stage (archived), audited. Every decision is appended to the rollout history with its gates' evidence; the state
(step, clock, baseline, gates) is saved after every tick, so a controller killed anywhere resumes where it was.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

from training import stages, traffic
from training.rollout import state as saved
from training.rollout.evidence import look, snapshot, window
from training.rollout.gates import Slo, Window, drift_gate, errors_gate, latency_gate, serving_gate
from training.rollout.plan import Plan, Step
from training.rollout.quality import quality_gate, replay_gate
from training.rollout.state import GateView, RolloutState

logger = logging.getLogger("training.rollout")
HARM = ("serving", "errors", "latency", "drift")


class Stopped(Exception):
    """The rollout is no longer running (aborted from another shell, or ended)."""


def decide(step: Step, gates: list[GateView], elapsed: float, rows: float, plan: Plan) -> tuple[str, str]:
    """("rollback" | "advance" | "hold", why) for a live step."""
    budget = plan.budget
    failed = [g for g in gates if g.state == "fail"]
    if failed:
        return "rollback", "; ".join(f"{g.gate}: {g.summary}" for g in failed)
    harm = [g for g in gates if g.gate in HARM and g.state != "n/a"]
    waiting = [g for g in harm if g.state != "pass"]
    quality = next((g for g in gates if g.gate == "quality"), GateView("quality", "n/a", ""))
    if elapsed < budget.min_seconds or rows < budget.min_rows:
        return "hold", f"minimum budget: {elapsed:.0f}/{budget.min_seconds:g} s, {rows:.0f}/{budget.min_rows} rows"
    if not waiting and quality.state == "better":
        return "advance", f"better: {quality.summary}"
    if not waiting and quality.state == "n/a":
        return "advance", f"no harm in {elapsed:.0f} s and {rows:.0f} rows ({quality.summary or 'no quality gate'})"
    if elapsed < budget.max_seconds and rows < budget.max_rows:
        why = ", ".join(f"{g.gate}: {g.summary}" for g in [*waiting, quality] if g.state == "hold")
        return "hold", f"waiting ({why})"
    if waiting:
        return "rollback", "budget ran out without evidence from " + ", ".join(f"{g.gate} ({g.summary})" for g in waiting)
    undecided = f"budget ran out, quality not yet significant ({quality.summary}): --undecided {plan.undecided}"
    if plan.undecided == "advance" or (plan.undecided == "earn" and not plan.last_canary(step)):
        return "advance", undecided
    return "rollback", undecided + (", and this was the last canary step" if plan.undecided == "earn" else "")


def verdict_of(gates: list[GateView]) -> str:
    """What the gate URL answers while a step runs: fail, pass (better and unharmed) or hold."""
    if any(g.state == "fail" for g in gates):
        return "fail"
    harmless = all(g.state in ("pass", "n/a") for g in gates if g.gate in HARM)
    quality = [g.state for g in gates if g.gate in ("quality", "replay")]
    return "pass" if harmless and quality and all(q in ("better", "pass") for q in quality) else "hold"


class Controller:
    def __init__(self, task: str, quality_seconds: float = 30.0, apply_seconds: float = 120.0):
        self.task = task
        self.quality_seconds = quality_seconds
        self.apply_seconds = apply_seconds
        self._quality: tuple[float, GateView] | None = None  # (when, result): the quality gate's last look

    # --- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> RolloutState:
        """Tick until the rollout ends or is stopped; holds the rollout's controller lock (saved.Busy if taken)."""
        with saved.controller_lock(self.task):
            current = saved.update(self.task, lambda s: replace(s, controller_pid=os.getpid(), heartbeat=time.time()))
            if not current.active:
                return current
            saved.note(current, "controller", pid=os.getpid(), resumed=current.step > 0 or current.applied_revision
                       is not None)
            while current.active:
                started = time.monotonic()
                try:
                    current = self.tick(current)
                except Stopped:
                    return saved.read(self.task)
                time.sleep(max(0.0, current.tick_seconds - (time.monotonic() - started)))
            return current

    def tick(self, current: RolloutState) -> RolloutState:
        moved = self._moved_outside(current)
        if moved:
            return self._end(current, "superseded", moved, clear=True)
        step = current.current
        if step.kind == "production":
            return self._promote(current)
        if step.kind == "replay":
            return self._replay(current)
        return self._live(current, step)

    # --- steps -------------------------------------------------------------------------------------------------
    def _replay(self, current: RolloutState) -> RolloutState:
        from monitoring.replay import ReplayError, replay

        slo = Slo(**current.slo)
        try:
            report = replay(current.candidate, current.control, current.log, last=current.plan.replay_rows,
                            outcomes=current.outcomes)
            gate = replay_gate(report, slo)
        except ReplayError as exc:
            gate = GateView("replay", "n/a", f"nothing to replay: {exc}")
        current = self._save(current, gates=(gate,), verdict=verdict_of([gate]))
        if gate.state == "fail":
            return self._rollback(current, f"replay: {gate.summary}")
        return self._advance(current, gate.summary)

    def _live(self, current: RolloutState, step: Step) -> RolloutState:
        if current.applied_revision is None:
            written = self._write_step(current, step)
            current = self._save(current, applied_revision=written.revision, step_written=time.time(),
                                 step_started=None, baseline=None)
            saved.note(current, "step", weight=step.weight, revision=written.revision,
                       traffic=written.tasks[current.task].describe())
            self._say(current, f"step {step.name}: traffic plan revision {written.revision} written")
        views = [look(url, {current.candidate, current.control}) for url in current.servers]
        if current.step_started is None:
            return self._applying(current, views)
        counts = window(views, current.baseline or {})
        evidence = Window(current.candidate, current.control, step.kind == "shadow", counts)
        slo = Slo(**current.slo)
        gates = [serving_gate(views, current.candidate), errors_gate(evidence, slo), latency_gate(evidence, slo),
                 drift_gate(evidence, slo)]
        # The quality gate reads the logs and may take seconds on a busy machine (6.7 s seen on 2 cores): a failing
        # harm gate rolls back without waiting for it.
        failed = [g.gate for g in gates if g.state == "fail"]
        gates.append(GateView("quality", "hold", f"not judged: {', '.join(failed)} failed") if failed
                     else self._quality_gate(current, step))
        rows = sum(evidence.rows(current.candidate))
        elapsed = time.time() - current.step_started
        action, why = decide(step, gates, elapsed, rows, current.plan)
        changed = [g.gate for g, old in zip(gates, _by_name(current.gates, gates)) if old is None or old.state != g.state]
        current = self._save(current, gates=tuple(gates), verdict=verdict_of(gates), reason=why)
        if changed:
            saved.note(current, "gates", changed=changed, elapsed=round(elapsed, 1), rows=rows,
                       gates=[g.__dict__ for g in gates])
        if action == "rollback":
            return self._rollback(current, why)
        if action == "advance":
            return self._advance(current, why)
        return current

    def _applying(self, current: RolloutState, views) -> RolloutState:
        behind = [v.url for v in views if v.error is not None or v.revision is None or v.revision < current.applied_revision]
        serving = serving_gate(views, current.candidate)
        waited = time.time() - (current.step_written or time.time())
        if serving.state == "fail":
            return self._rollback(current, f"serving: {serving.summary}")
        if behind or serving.state != "pass":
            if waited > self.apply_seconds:
                return self._rollback(current, f"the servers did not follow step {current.current.name} within "
                                      f"{self.apply_seconds:g} s: behind {behind}, {serving.summary}")
            return self._save(current, gates=(serving,), verdict="hold",
                              reason=f"waiting for the servers to follow revision {current.applied_revision}")
        now = time.time()
        current = self._save(current, step_started=now, baseline=snapshot(views), gates=(serving,),
                             canary_started=current.canary_started or (now if current.current.kind == "canary" else None))
        saved.note(current, "clock", revision=current.applied_revision)
        self._say(current, f"step {current.current.name}: every server follows it; the clock starts")
        return current

    def _quality_gate(self, current: RolloutState, step: Step) -> GateView:
        if step.kind != "canary":
            return GateView("quality", "n/a", "shadow predictions are never answered, so no outcome names them")
        now = time.monotonic()
        if self._quality is None or now - self._quality[0] >= self.quality_seconds:
            self._quality = (now, quality_gate(current.log, current.outcomes, current.canary_started, current.candidate,
                                          current.control, Slo(**current.slo).min_evidence))
        return self._quality[1]

    def _write_step(self, current: RolloutState, step: Step) -> traffic.Plan:
        reason = f"rollout {current.id}: step {step.name}"
        if step.kind == "shadow":
            return traffic.set_traffic(current.task, {current.control: 1.0}, [current.candidate], reason=reason)
        return traffic.set_traffic(current.task, {current.control: 1 - step.weight, current.candidate: step.weight},
                                   reason=reason)

    # --- decisions -----------------------------------------------------------------------------------------------
    def _advance(self, current: RolloutState, why: str) -> RolloutState:
        step = current.current
        saved.note(current, "advance", reason=why, gates=[g.__dict__ for g in current.gates])
        self._say(current, f"step {step.name}: advance ({why})")
        self._quality = None
        following = current.plan.steps[current.step + 1]
        # A promotion ends with the last step's gates and verdict (what earned it); a new step starts with none and
        # holds, or the gate URL would pass a step on the evidence of the one before.
        promoting = following.kind == "production"
        return self._save(current, step=current.step + 1, applied_revision=None, step_written=None, step_started=None,
                          baseline=None, gates=current.gates if promoting else (),
                          verdict=current.verdict if promoting else "hold", reason=why)

    def _rollback(self, current: RolloutState, why: str) -> RolloutState:
        traffic.clear_traffic(current.task, reason=f"rollout {current.id}: rollback")
        stages.retire(current.task, current.candidate, reason=f"rollout {current.id}: {why}", action="rollback")
        return self._end(current, "rolled_back", why)

    def _promote(self, current: RolloutState) -> RolloutState:
        why = f"rollout {current.id}: every step passed"
        if stages.holder(current.task, "production") != current.candidate:
            stages.move(current.task, current.candidate, "production", reason=why)
        traffic.clear_traffic(current.task, reason=f"rollout {current.id}: promoted")
        return self._end(current, "promoted", why)

    def _end(self, current: RolloutState, status: str, why: str, clear: bool = False) -> RolloutState:
        if clear:
            planned = traffic.read().tasks.get(current.task)
            if planned is not None and (planned.reason or "").startswith(f"rollout {current.id}:"):
                traffic.clear_traffic(current.task, reason=f"rollout {current.id}: {status}")
        ended = self._save(current, status=status, ended=time.time(), reason=why,
                           verdict="pass" if status == "promoted" else "fail")
        saved.note(ended, status, reason=why, gates=[g.__dict__ for g in ended.gates])
        self._say(ended, f"{status}: {why}")
        return ended

    def _moved_outside(self, current: RolloutState) -> str | None:
        """Why the stage book no longer says what this rollout started from (someone promoted or retrained)."""
        held = stages.stages_of(current.task)
        promoting = current.current.kind == "production"
        if held.get("production") != current.control and not (promoting and held.get("production") == current.candidate):
            return f"production is {held.get('production')} now, not {current.control}: the stage book changed outside the rollout"
        if held.get("candidate") != current.candidate and not promoting:
            return f"the candidate is {held.get('candidate')} now, not {current.candidate}: the stage book changed outside the rollout"
        return None

    # --- state -------------------------------------------------------------------------------------------------
    def _save(self, current: RolloutState, **changes) -> RolloutState:
        """Write the state if the rollout still runs; otherwise undo this tick's traffic and stop."""
        def apply(on_disk: RolloutState) -> RolloutState:
            if not on_disk.active:
                raise Stopped(on_disk.status)
            return replace(current, **changes, heartbeat=time.time())

        try:
            return saved.update(self.task, apply)
        except Stopped:
            planned = traffic.read().tasks.get(self.task)
            if planned is not None and (planned.reason or "").startswith(f"rollout {current.id}:"):
                traffic.clear_traffic(self.task, reason=f"rollout {current.id}: stopped")
            raise

    @staticmethod
    def _say(current: RolloutState, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} rollout {current.id}: {message}", flush=True)


def _by_name(previous: tuple[GateView, ...], gates: list[GateView]) -> list[GateView | None]:
    known = {g.gate: g for g in previous}
    return [known.get(g.gate) for g in gates]

