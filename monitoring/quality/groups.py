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


def arm_names(frame: pd.DataFrame) -> pd.Series:
    """How variants are named in verdicts: name:version, and @alias when served under one (vectorized)."""
    names = frame["model_name"].astype(str) + ":" + frame["model_version"].astype(str)
    alias = frame["alias"].where(frame["alias"].notna() & (frame["alias"].astype(str) != ""), None)
    return names.where(alias.isna(), names + "@" + alias.astype(str))


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


def group_quality(frame: pd.DataFrame, info: StoreInfo) -> dict[str, Any]:
    first = frame.iloc[0]
    labelled = frame[frame["outcome"].notna()]
    y = labelled["outcome"].to_numpy(dtype=np.int64)
    p = labelled["probability"].to_numpy(dtype=np.float64)
    metrics = live_metrics(y, p, info.threshold)
    held = info.held_out or {}
    degradation = None
    if metrics is not None and held:
        degradation = {m: round(metrics[m] - held[m], 4) for m in COMPARED if m in held and m in metrics}
    return {
        "arm": arm_names(frame.iloc[:1]).iloc[0],
        "model": first["model_name"],
        "version": first["model_version"],
        "alias": first["alias"] if isinstance(first["alias"], str) else None,
        "variant": first["variant"] if isinstance(first["variant"], str) else None,
        "endpoints": sorted(str(e) for e in frame["endpoint"].dropna().unique()),
        "predictions": int(len(frame)),
        "with_outcome": int(len(labelled)),
        "outcome_share": round(len(labelled) / len(frame), 4) if len(frame) else 0.0,
        "threshold": info.threshold,
        "metrics": metrics,
        "held_out": held or None,
        "live_minus_held_out": degradation,
        "note": None if metrics is not None else "needs outcomes of both classes",
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
