"""python -m training.rollout start|status|abort|history|resume (docs/rollout.md walks one as typed).

    python -m training.rollout start --task purchase                   # TASK@candidate against TASK@production
    python -m training.rollout start --task purchase --steps shadow,10,50 --min-seconds 30 --max-seconds 300
    python -m training.rollout status                                   # every task's current or last rollout
    python -m training.rollout abort --task purchase --reason "wrong data"
    python -m training.rollout history --task purchase [--rollout ID]
    python -m training.rollout resume --task purchase                   # a controller again, after a crash

`start` saves the rollout and starts its controller as a process of its own (its output in
STATE_DIR/rollouts/<id>.log), or in this terminal with `--foreground`. A refusal is one line on stderr and exit
status 2: no candidate or production model, the two the same, another input schema, a running rollout of the task,
a second controller for the same rollout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone

from settings import get_settings
from training import traffic
from training.rollout import state as saved
from training.rollout.controller import Controller
from training.rollout.gates import Slo
from training.rollout.plan import DEFAULT_STEPS, UNDECIDED, Budget, make_plan
from training.store import load_metadata, resolve_ref, task_of


class Refused(Exception):
    """One line for the user, exit status 2."""


def start(args) -> int:
    settings = get_settings()
    try:
        plan = make_plan(args.steps, budget=Budget(args.min_seconds, args.max_seconds, args.min_rows, args.max_rows),
                         undecided=args.undecided, replay_rows=args.replay_rows)
        candidate = resolve_ref(args.candidate or f"{args.task}@candidate")
        control = resolve_ref(f"{args.task}@production")
    except (ValueError, LookupError) as exc:
        raise Refused(str(exc)) from None
    if candidate == control:
        raise Refused(f"the candidate {candidate} is already production")
    _, mine = load_metadata(candidate)
    _, theirs = load_metadata(control)
    if mine.get("task") != args.task:
        raise Refused(f"{candidate} is a model of task {mine.get('task')!r}, not {args.task!r}")
    if mine.get("input_schema") != theirs.get("input_schema") and not args.allow_schema_change:
        raise Refused(f"{candidate}'s input schema differs from production {control}'s; pass --allow-schema-change")
    routed = task_of(settings.default_purchase_model)
    if routed != args.task and any(step.kind in ("shadow", "canary") for step in plan.steps):
        raise Refused(f"task {args.task}'s traffic is not routed by weight (DEFAULT_PURCHASE_MODEL serves {routed}): "
                      "use --steps replay")
    now = datetime.now(timezone.utc)
    rollout = saved.RolloutState(
        id=f"{args.task}-{now:%Y%m%dT%H%M%S}", task=args.task, candidate=candidate, control=control, plan=plan,
        servers=tuple(args.server or settings.rollout_servers), log=args.log or str(settings.prediction_log_path),
        outcomes=args.outcomes or str(settings.outcome_log_path), slo=Slo.from_settings(settings).as_dict(),
        tick_seconds=settings.rollout_tick_seconds, started=now.timestamp(), updated=now.timestamp())
    try:
        saved.create(rollout)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    saved.note(rollout, "start", candidate=candidate, control=control, plan=plan.as_dict(), servers=rollout.servers,
               slo=rollout.slo)
    if args.foreground:
        print(f"rollout {rollout.id}: {candidate} against production {control}; {plan.describe()}", flush=True)
        return resume(args)
    log = settings.state_dir / "rollouts" / f"{rollout.id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "training.rollout", "resume", "--task", args.task],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if (saved.read(args.task) or rollout).controller_pid == process.pid:
            break
        time.sleep(0.1)
    if process.poll() is not None:
        raise Refused(f"the controller exited {process.returncode} at once (see {log}); the rollout is saved: "
                      f"`python -m training.rollout resume --task {args.task}` or `abort`")
    print(f"rollout {rollout.id} started: {candidate} against production {control}; {plan.describe()}; "
          f"controller pid {process.pid} (log {log}); `python -m training.rollout status --task {args.task}`")
    return 0


def resume(args) -> int:
    settings = get_settings()
    controller = Controller(args.task, settings.rollout_quality_seconds, settings.rollout_apply_seconds)
    try:
        ended = controller.run()
    except saved.Busy as exc:
        raise Refused(str(exc)) from None
    except LookupError as exc:
        raise Refused(str(exc)) from None
    print(f"rollout {ended.id}: {ended.status}" + (f" ({ended.reason})" if ended.reason else ""), flush=True)
    return 0


def abort(args) -> int:
    reason = args.reason or "aborted by hand"

    def stop(current: saved.RolloutState) -> saved.RolloutState:
        if not current.active:
            raise Refused(f"rollout {current.id} of task {args.task} is not running ({current.status})")
        return replace(current, status="aborted", ended=time.time(), reason=reason, verdict="fail")

    try:
        stopped = saved.update(args.task, stop)
    except LookupError as exc:
        raise Refused(str(exc)) from None
    traffic.clear_traffic(args.task, reason=f"rollout {stopped.id}: aborted")
    saved.note(stopped, "aborted", reason=reason)
    print(f"rollout {stopped.id} aborted at step {stopped.current.name}: traffic back to production "
          f"{stopped.control}; {stopped.candidate} stays the candidate")
    return 0


def status(args) -> int:
    states = [s for s in saved.read_all() if args.task in (None, s.task)]
    if not states:
        print("no rollout" + (f" of task {args.task}" if args.task else ""))
    now = time.time()
    for s in states:
        step = s.current
        clock = f", {now - s.step_started:.0f} s in" if s.step_started and s.active else ""
        weight = f", candidate weight {step.weight:.0%}" if step.kind == "canary" else ""
        print(f"{s.id}: {s.status}, step {s.step + 1}/{len(s.plan.steps)} {step.name}{weight}{clock}; "
              f"{s.candidate} against {s.control}; verdict {s.verdict}")
        for gate in s.gates:
            print(f"  {gate.gate:<8} {gate.state:<6} {gate.summary}")
        if s.reason:
            print(f"  {'ended' if not s.active else 'last'}: {s.reason}")
        if s.active:
            age = f"{now - s.heartbeat:.0f} s ago" if s.heartbeat else "never"
            print(f"  controller pid {s.controller_pid}, last tick {age}; "
                  f"if it is gone: python -m training.rollout resume --task {s.task}")
    return 0


def history(args) -> int:
    entries = saved.history(args.task, args.rollout)
    if args.rollout is None:
        entries = [e for e in entries if e["kind"] in ("start", *saved.ENDED)]
    for e in entries:
        when = datetime.fromtimestamp(e["ts"], timezone.utc).isoformat(timespec="seconds")
        detail = {"start": lambda: f"{e['candidate']} against {e['control']}",
                  "controller": lambda: f"pid {e['pid']}" + (" (resumed)" if e.get("resumed") else ""),
                  "step": lambda: f"revision {e['revision']}: {e['traffic']}",
                  "clock": lambda: f"every server follows revision {e['revision']}"}.get(e["kind"], lambda: e.get("reason") or "")()
        gates = "; ".join(f"{g['gate']} {g['state']}" for g in e.get("gates", []))
        print(f"{when}  {e['rollout']}  {e['step']:<12} {e['kind']:<11} {detail}" + (f"  [{gates}]" if gates else ""))
    if not entries:
        print("no rollout recorded")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m training.rollout", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    go = commands.add_parser("start", help="start a rollout and its controller")
    go.add_argument("--task", required=True)
    go.add_argument("--candidate", help="tag or alias (default TASK@candidate)")
    go.add_argument("--steps", default=DEFAULT_STEPS, help=f"replay, shadow and canary percentages (default {DEFAULT_STEPS})")
    defaults = Budget()
    go.add_argument("--min-seconds", type=float, default=defaults.min_seconds, help="least time per live step")
    go.add_argument("--max-seconds", type=float, default=defaults.max_seconds, help="most time per live step")
    go.add_argument("--min-rows", type=int, default=defaults.min_rows, help="least candidate rows per live step")
    go.add_argument("--max-rows", type=int, default=defaults.max_rows, help="most candidate rows per live step")
    go.add_argument("--undecided", choices=UNDECIDED, default="earn",
                    help="a canary step whose budget ran out before the A/B verdict: earn (the default) advances from "
                    "all but the last canary step and rolls back there; advance; rollback")
    go.add_argument("--replay-rows", type=int, default=20_000, help="logged production rows the replay step scores")
    go.add_argument("--server", action="append", help="a server's base URL (repeat; default ROLLOUT_SERVERS)")
    go.add_argument("--log", help="prediction log, folder or glob (default PREDICTION_LOG_PATH)")
    go.add_argument("--outcomes", help="outcome store (default OUTCOME_LOG_PATH)")
    go.add_argument("--allow-schema-change", action="store_true")
    go.add_argument("--foreground", action="store_true", help="run the controller in this terminal")
    for name, text in (("resume", "run the rollout's controller here (after a crash)"),
                       ("abort", "stop the rollout: traffic back to production")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--task", required=True)
        if name == "abort":
            command.add_argument("--reason")
    look = commands.add_parser("status", help="every task's current or last rollout")
    look.add_argument("--task")
    past = commands.add_parser("history", help="rollouts, or one rollout's every decision")
    past.add_argument("--task")
    past.add_argument("--rollout", help="a rollout id: every decision with its gates")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = {"start": start, "resume": resume, "abort": abort, "status": status, "history": history}[args.command]
    try:
        return command(args)
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
