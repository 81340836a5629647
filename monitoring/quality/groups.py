"""Quality per model, version, alias and variant: live metrics over the predictions that have an outcome, beside
the held-out metrics the training run stored in the model's metadata (training/evaluate.py computes both)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from monitoring.abtest import auc_delong
from training.evaluate import evaluate

GROUP_KEYS = ["model_name", "model_version", "alias", "variant"]
COMPARED = ("roc_auc", "log_loss", "brier", "precision", "recall", "positive_rate")


@dataclass(frozen=True)
class StoreInfo:
    task: str | None
    threshold: float
    held_out: dict[str, Any] | None


@lru_cache(maxsize=None)
def store_info(name: str, version: str) -> StoreInfo | None:
    """The model's task, threshold and held-out metrics from the store (metadata only: no model is loaded)."""
    import bentoml

    try:
        model = bentoml.models.get(f"{name}:{version}")
    except bentoml.exceptions.NotFound:
        return None
    metadata = model.info.metadata
    return StoreInfo(metadata.get("task"), float(metadata.get("threshold", 0.5)), metadata.get("metrics"))


def arm_name(name: str, version: str, alias: str | None) -> str:
    """How a variant is named in the table and the verdicts: name:version, and the stage alias it was served under
    in parentheses (an alias is task@stage itself, so `@` stays the alias's own)."""
    return f"{name}:{version}" + (f" ({alias})" if alias else "")


def live_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any] | None:
    """The held-out metric set on live outcomes, plus a 95% DeLong interval for ROC AUC; None without both classes."""
    if y.size < 2 or np.unique(y).size < 2:
        return None
    metrics = evaluate(y, p, threshold)
    auc = auc_delong(y, p)
    if auc is not None:
        half = float(norm.ppf(0.975)) * math.sqrt(auc.variance)
        metrics["roc_auc_ci95"] = [round(auc.value - half, 4), round(auc.value + half, 4)]
    return metrics


@dataclass(frozen=True)
class GroupKey:
    model: str
    version: str
    alias: str | None
    variant: str | None

    @property
    def arm(self) -> str:
        return arm_name(self.model, self.version, self.alias)


def group_quality(key: GroupKey, rows: pd.DataFrame, endpoints: list[str], info: StoreInfo,
                  min_rows: int) -> dict[str, Any]:
    """One variant's quality: `rows` are its predictions (ts, probability, outcome: 0, 1 or NaN while none came).
    A variant with fewer than `min_rows` predictions (a leftover of a promotion) gets counts, no metrics."""
    labelled = rows["outcome"].notna().to_numpy()
    y = rows["outcome"].to_numpy()[labelled].astype(np.int64)
    p = rows["probability"].to_numpy()[labelled]
    below = len(rows) < min_rows
    metrics = None if below else live_metrics(y, p, info.threshold)
    held = info.held_out or {}
    degradation = None
    if metrics is not None and held:
        degradation = {m: round(metrics[m] - held[m], 4) for m in COMPARED if m in held and m in metrics}
    note = None
    if below:
        note = f"fewer than {min_rows} predictions (--min-rows): no metrics"
    elif metrics is None:
        note = "needs outcomes of both classes"
    return {
        "arm": key.arm,
        "model": key.model,
        "version": key.version,
        "alias": key.alias,
        "variant": key.variant,
        "endpoints": endpoints,
        "predictions": int(len(rows)),
        "with_outcome": int(labelled.sum()),
        "outcome_share": round(float(labelled.mean()), 4) if len(rows) else 0.0,
        "below_min_rows": below,
        "threshold": info.threshold,
        "metrics": metrics,
        "held_out": held or None,
        "live_minus_held_out": degradation,
        "note": note,
    }


def regressions(groups: list[dict[str, Any]], tolerance: float) -> list[str]:
    """Groups whose live ROC AUC is below the held-out one by more than `tolerance`, beyond its 95% interval."""
    found = []
    for group in groups:
        metrics, held = group["metrics"], group["held_out"] or {}
        if metrics and "roc_auc_ci95" in metrics and "roc_auc" in held:
            if metrics["roc_auc_ci95"][1] < held["roc_auc"] - tolerance:
                found.append(f"{group['arm']}: live ROC AUC {metrics['roc_auc']} (95% CI {metrics['roc_auc_ci95']}) "
                             f"vs held-out {held['roc_auc']}")
    return found
