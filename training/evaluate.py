"""Held-out evaluation: discrimination, probability quality and the decision threshold's precision and recall."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, f1_score, log_loss, precision_score, recall_score, roc_auc_score

CALIBRATION_BINS = 5


def calibration(y_true: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, object]:
    """Mean predicted vs observed rate in equal-count bins, and the expected calibration error over them."""
    order = np.argsort(proba, kind="stable")
    table = []
    ece = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size == 0:
            continue
        predicted, observed = float(proba[chunk].mean()), float(y_true[chunk].mean())
        table.append({"predicted": round(predicted, 4), "observed": round(observed, 4), "rows": int(chunk.size)})
        ece += abs(predicted - observed) * chunk.size / proba.size
    return {"bins": table, "ece": round(ece, 4)}


def best_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The threshold with the best F1 on validation data: rare positives make 0.5 useless."""
    candidates = np.unique(np.quantile(proba, np.linspace(0.5, 0.999, 200)))
    scores = [f1_score(y_true, proba >= t, zero_division=0) for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def evaluate(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, object]:
    predicted = (proba >= threshold).astype(int)
    return {
        "roc_auc": round(float(roc_auc_score(y_true, proba)), 4),
        "log_loss": round(float(log_loss(y_true, proba, labels=[0, 1])), 4),
        "brier": round(float(brier_score_loss(y_true, proba)), 4),
        "precision": round(float(precision_score(y_true, predicted, zero_division=0)), 4),
        "recall": round(float(recall_score(y_true, predicted, zero_division=0)), 4),
        "accuracy": round(float((predicted == y_true).mean()), 4),
        "threshold": round(threshold, 4),
        "positive_rate": round(float(y_true.mean()), 4),
        "calibration": calibration(y_true, proba),
    }
