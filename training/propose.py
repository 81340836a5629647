"""Training proposes, it does not promote: which stage each new version of a training run takes.

- A task with no production model yet (a fresh store): each new version takes its variant's stage, as the default
  models are laid out (`purchase_gbm` and `drive_stats_a` production, the others candidate).
- Otherwise production stays where it is: the run's best new version of the task (held-out ROC AUC) becomes the
  candidate, to earn production through a rollout (`python -m training.rollout start`); the others are archived.
- `--promote` gives production to the run's best new version at once, an explicit move audited as such.

Each decision is one printed line with the new version's held-out metrics beside the production model's on the
same held-out rows (so the two numbers compare the models, not two test sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training import stages
from training.evaluate import evaluate
from training.promote import promote
from training.store import load_metadata, load_model


@dataclass(frozen=True)
class NewVersion:
    tag: str
    stage: str  # its variant's stage on a fresh store
    metrics: dict


def _on_same_rows(production: str, candidate: NewVersion, raw_test: pd.DataFrame, y_test: np.ndarray) -> str:
    """The production model's metrics on the run's held-out rows, or why they cannot be had."""
    try:
        _, metadata = load_metadata(candidate.tag)
        model = load_model(production)
    except Exception as exc:  # noqa: BLE001 - a comparison that cannot be made is said, not fatal
        return f"production {production} cannot be scored here: {exc}"
    if model.input_schema != metadata.get("input_schema"):
        return f"production {production} has another input schema; its held-out ROC AUC was " \
               f"{model.metadata.get('metrics', {}).get('roc_auc')}"
    theirs = evaluate(y_test, model.predict_proba(raw_test[list(model.input_schema["columns"])]), model.threshold)
    return f"production {production} on the same rows: ROC AUC {theirs['roc_auc']}, log loss {theirs['log_loss']}"


def propose(task: str, new: list[NewVersion], raw_test: pd.DataFrame, y_test: np.ndarray, *,
            promote_best: bool = False) -> str:
    """Give the run's new versions of `task` their stages; returns the one line that says what happened."""
    production = stages.holder(task, "production")
    if production is None or production in {version.tag for version in new}:
        # (A task the stage book has not seen yet reads its stages from the labels, which the new versions carry.)
        for version in new:
            promote(version.tag, version.stage, reason="trained (the task had no production model)",
                    allow_schema_change=True)
        held = ", ".join(f"{task}@{v.stage} = {v.tag}" for v in new)
        return f"{task}: {held} (the task had no production model)"
    best = max(new, key=lambda v: v.metrics["roc_auc"])
    mine = f"ROC AUC {best.metrics['roc_auc']}, log loss {best.metrics['log_loss']} on {len(y_test):,} held-out rows"
    theirs = _on_same_rows(production, best, raw_test, y_test)
    if promote_best:
        promote(best.tag, "production", reason="trained; --promote", allow_schema_change=True)
        return f"{task}@production = {best.tag} (--promote; was {production}): {mine}; {theirs}"
    promote(best.tag, "candidate", reason="trained", allow_schema_change=True)
    others = [v.tag for v in new if v is not best]
    archived = f"; {', '.join(others)} archived" if others else ""
    return (f"{task}@candidate = {best.tag}: {mine}; {theirs}. Production unchanged: "
            f"`python -m training.rollout start --task {task}` rolls it out, `--promote` takes production now{archived}")
