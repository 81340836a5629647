"""Move a stage alias (`task@stage`) to a model version, with an audit trail kept with the model store.

    python -m training.promote purchase_lr --stage production --reason "better recall"
    python -m training.promote purchase_lr:abc123 --stage candidate
    python -m training.promote --history purchase
    python -m training.promote --rollback purchase --stage production

A refusal is one line on stderr and exit status 2: a model or version that is not in the store, a version of
another task than `--task`, or a production candidate whose input schema differs from the production model's
(unless `--allow-schema-change`). Running servers that serve the alias follow it within MODEL_REFRESH_SECONDS.
"""

from __future__ import annotations

import argparse
import sys

from training import stages
from training.store import load_metadata, parse_ref


class Refused(Exception):
    """A promotion that must not happen; the message is the one line the user sees."""


def promote(model: str, stage: str, *, task: str | None = None, demote_to: str = stages.ARCHIVED,
            reason: str | None = None, allow_schema_change: bool = False) -> stages.Move:
    """Give `stage` to `model` (`name` = its latest version, or `name:version`); raises Refused."""
    ref = parse_ref(model)
    if ref.is_alias:
        raise Refused(f"{model!r} is an alias: promote a model name or name:version")
    try:
        tag, metadata = load_metadata(ref.text)
    except LookupError as exc:
        raise Refused(str(exc)) from None
    model_task = metadata.get("task")
    if task is not None and model_task != task:
        raise Refused(f"{tag} is a model of task {model_task!r}, not {task!r}")
    if stage == "production" and not allow_schema_change:
        current = stages.holder(model_task, "production")
        if current is not None and current != tag:
            _, production = load_metadata(current)
            if production.get("input_schema") != metadata.get("input_schema"):
                raise Refused(f"{tag}'s input schema differs from production model {current}'s; "
                              "pass --allow-schema-change to promote it anyway")
    return stages.move(model_task, tag, stage, demote_to=demote_to, reason=reason)


def rollback(task: str, stage: str, reason: str | None = None) -> stages.Move:
    """Give `stage` back to the version that held it before the current one; raises Refused."""
    previous = stages.previous_holder(task, stage)
    if previous is None:
        raise Refused(f"no earlier holder of {task}@{stage} in the history to roll back to")
    try:
        load_metadata(previous)
    except LookupError as exc:
        raise Refused(f"cannot roll back to {previous}: {exc}") from None
    return stages.move(task, previous, stage, reason=reason or "rollback", action="rollback")


def describe(m: stages.Move) -> str:
    """One audit record's change: a stage move, a retired version, or the task's traffic."""
    if m.action == "traffic":
        if m.traffic is None:
            return f"{m.task} traffic -> the servers' AB_WEIGHTS and SHADOW_MODELS"
        weights = ",".join(f"{ref}={w:g}" for ref, w in sorted(m.traffic["weights"].items())) or "no split"
        return f"{m.task} traffic -> weights {weights}; shadow {','.join(m.traffic['shadow']) or 'none'}"
    if m.action in ("load", "unload"):
        return f"{m.action} {m.reference}"
    if m.to_version is None:
        return f"{m.task}@{m.stage}  {m.from_version} -> {m.demoted_to}"
    demoted = f" ({m.from_version} -> {m.demoted_to})" if m.demoted_to else ""
    return f"{m.task}@{m.stage}  {m.from_version or '-'} -> {m.to_version}{demoted}"


def print_history(task: str) -> None:
    moves = stages.history(task)
    if not moves:
        print(f"no promotions recorded for task {task!r}")
    for m in moves:
        print(f"{m.ts}  {m.user}  {m.action}  {describe(m)}  {m.reason or ''}".rstrip())
    for stage, tag in sorted(stages.stages_of(task).items()):
        print(f"now: {task}@{stage} = {tag}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="MODEL or MODEL:VERSION to promote")
    parser.add_argument("--stage", help="the stage to give it, e.g. production or candidate")
    parser.add_argument("--task", help="refuse unless the model belongs to this task")
    parser.add_argument("--demote-to", default=stages.ARCHIVED, help="stage of the previous holder (default archived)")
    parser.add_argument("--reason", help="why, for the audit trail")
    parser.add_argument("--allow-schema-change", action="store_true", help="promote despite a different input schema")
    parser.add_argument("--history", metavar="TASK", help="print the promotion history of TASK")
    parser.add_argument("--rollback", metavar="TASK", help="give --stage of TASK back to its previous holder")
    args = parser.parse_args(argv)
    try:
        if args.history:
            print_history(args.history)
            return 0
        if args.rollback:
            if not args.stage:
                parser.error("--rollback needs --stage")
            record = rollback(args.rollback, args.stage, args.reason)
        else:
            if not args.model or not args.stage:
                parser.error("give MODEL and --stage (or --history TASK, or --rollback TASK --stage STAGE)")
            record = promote(args.model, args.stage, task=args.task, demote_to=args.demote_to, reason=args.reason,
                             allow_schema_change=args.allow_schema_change)
    except (Refused, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    demoted = f"; {record.from_version} -> {record.demoted_to}" if record.demoted_to else ""
    print(f"{record.task}@{record.stage} = {record.to_version} (was {record.from_version or 'empty'}{demoted})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
