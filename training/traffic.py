"""The traffic plan: the stage book's other half. Which share of each task's routed traffic each reference gets
(canary weights), which references shadow-score it, and which references every server loads or unloads on top of
its own SERVED_MODELS (the admin API's load and unload). Every worker of every server sharing the model store
follows it on its refresh, as it follows the stage aliases (serving/core/lifecycle.py).

    <model store>/.lifecycle-traffic.json
    {"revision": 7,
     "tasks": {"purchase": {"weights": {"purchase@candidate": 0.05, "purchase@production": 0.95},
                            "shadow": [], "reason": "rollout purchase-20261203T101500: step canary-5"}},
     "load": ["purchase_lr:abc123"], "unload": []}

A task absent from `tasks` is routed by each server's own AB_WEIGHTS and SHADOW_MODELS (the start-up default); a
task present is routed by the plan alone (`weights` {} means no split: all to DEFAULT_PURCHASE_MODEL). Every
change happens under the stage book's lock, bumps `revision`, is written atomically and is audited in the stage
book's history (training/stages.py).

    python -m training.traffic                                   # the plan
    python -m training.traffic --task purchase --weights purchase@production=0.9,purchase@candidate=0.1
    python -m training.traffic --task purchase --shadow purchase@candidate --weights ''
    python -m training.traffic --task purchase --clear           # back to each server's own settings
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import orjson

from training import stages
from training.store import parse_ref

TRAFFIC_FILE = ".lifecycle-traffic.json"


@dataclass(frozen=True)
class Traffic:
    """One task's routed traffic: reference -> share (normalized when applied), and the shadow references."""

    weights: dict[str, float]
    shadow: tuple[str, ...] = ()
    reason: str | None = None

    def describe(self) -> str:
        weights = ",".join(f"{ref}={weight:g}" for ref, weight in sorted(self.weights.items())) or "no split"
        return f"weights {weights}; shadow {','.join(self.shadow) or 'none'}"


@dataclass(frozen=True)
class Plan:
    revision: int = 0
    tasks: dict[str, Traffic] = field(default_factory=dict)
    load: tuple[str, ...] = ()
    unload: tuple[str, ...] = ()

    def references(self) -> list[str]:
        """Every reference the plan asks servers to answer: the load list, the weighted arms, the shadows."""
        routed = [ref for traffic in self.tasks.values() for ref in (*traffic.weights, *traffic.shadow)]
        return list(dict.fromkeys([*self.load, *routed]))

    def as_dict(self) -> dict:
        return {"revision": self.revision, "load": list(self.load), "unload": list(self.unload),
                "tasks": {task: {"weights": t.weights, "shadow": list(t.shadow), "reason": t.reason}
                          for task, t in self.tasks.items()}}


def _path():
    return stages.store_dir() / TRAFFIC_FILE


def read() -> Plan:
    """The plan now (an empty one when none was ever written). No lock: the file is replaced atomically."""
    path = _path()
    if not path.exists():
        return Plan()
    data = orjson.loads(path.read_bytes())
    tasks = {task: Traffic({ref: float(w) for ref, w in t.get("weights", {}).items()}, tuple(t.get("shadow", ())),
                           t.get("reason"))
             for task, t in data.get("tasks", {}).items()}
    return Plan(int(data.get("revision", 0)), tasks, tuple(data.get("load", ())), tuple(data.get("unload", ())))


def check_weights(weights: dict[str, float]) -> None:
    """ValueError naming what is wrong: a malformed reference, a negative weight, weights summing to zero."""
    for ref, weight in weights.items():
        parse_ref(ref)
        if not weight >= 0:
            raise ValueError(f"the weight of {ref} is {weight}: weights must be at least 0")
    if weights and sum(weights.values()) <= 0:
        raise ValueError("weights must not all be 0")


def _change(action: str, task: str | None, apply, **fields) -> Plan:
    """Apply a change under the lock, bump the revision, write, audit; returns the plan written."""
    with stages.locked():
        plan = read()
        plan = apply(plan)
        plan = Plan(plan.revision + 1, plan.tasks, plan.load, plan.unload)
        stages.write_atomically(_path(), plan.as_dict())
        stages.append_history(stages.record(action, task, **fields))
    return plan


def set_traffic(task: str, weights: dict[str, float], shadow: list[str] | tuple[str, ...] = (), *,
                reason: str | None = None) -> Plan:
    """Route `task` by `weights` and shadow it with `shadow` on every server; raises ValueError for bad input."""
    check_weights(weights)
    for ref in shadow:
        parse_ref(ref)
    traffic = Traffic(dict(weights), tuple(dict.fromkeys(shadow)), reason)

    def apply(plan: Plan) -> Plan:
        return Plan(plan.revision, {**plan.tasks, task: traffic}, plan.load, plan.unload)

    return _change("traffic", task, apply, reason=reason,
                   traffic={"weights": traffic.weights, "shadow": list(traffic.shadow)})


def clear_traffic(task: str, *, reason: str | None = None) -> Plan:
    """Give `task` back to each server's own AB_WEIGHTS and SHADOW_MODELS."""

    def apply(plan: Plan) -> Plan:
        return Plan(plan.revision, {t: v for t, v in plan.tasks.items() if t != task}, plan.load, plan.unload)

    return _change("traffic", task, apply, reason=reason, traffic=None)


def set_served(reference: str, serve: bool, *, reason: str | None = None) -> Plan:
    """Every server loads `reference` (serve) or stops serving it (not serve), whatever its SERVED_MODELS says."""
    parse_ref(reference)

    def apply(plan: Plan) -> Plan:
        load = [ref for ref in plan.load if ref != reference]
        unload = [ref for ref in plan.unload if ref != reference]
        (load if serve else unload).append(reference)
        return Plan(plan.revision, plan.tasks, tuple(load), tuple(unload))

    return _change("load" if serve else "unload", None, apply, reference=reference, reason=reason)


def parse_weights(text: str) -> dict[str, float]:
    """`ref=weight,ref=weight` (AB_WEIGHTS' form); ValueError naming the malformed item."""
    weights = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        ref, sep, weight = item.partition("=")
        try:
            weights[ref.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"{item!r} is not reference=weight") from None
        if not sep:
            raise ValueError(f"{item!r} is not reference=weight")
    return weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", help="the task whose traffic to set")
    parser.add_argument("--weights", help="reference=weight,... ('' for no split)")
    parser.add_argument("--shadow", default="", help="comma-separated shadow references")
    parser.add_argument("--clear", action="store_true", help="back to each server's AB_WEIGHTS and SHADOW_MODELS")
    parser.add_argument("--reason", help="why, for the audit trail")
    args = parser.parse_args(argv)
    try:
        if args.task and args.clear:
            clear_traffic(args.task, reason=args.reason)
        elif args.task and args.weights is not None:
            shadow = [ref.strip() for ref in args.shadow.split(",") if ref.strip()]
            set_traffic(args.task, parse_weights(args.weights), shadow, reason=args.reason)
        elif args.task or args.clear or args.weights is not None:
            parser.error("give --task with --weights (and --shadow) or with --clear")
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    plan = read()
    print(f"revision {plan.revision}")
    for task, traffic in sorted(plan.tasks.items()):
        print(f"{task}: {traffic.describe()}" + (f"  ({traffic.reason})" if traffic.reason else ""))
    if not plan.tasks:
        print("every task follows each server's AB_WEIGHTS and SHADOW_MODELS")
    print(f"load: {', '.join(plan.load) or '-'}; unload: {', '.join(plan.unload) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
