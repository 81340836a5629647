"""Confidence-based performance estimation (CBPE, NannyML's method), vectorized over many segments at once.

A calibrated probability p is the chance that the row's outcome is 1, so each row adds p to the expected true
positives when the model predicted 1 (1 - p to the false positives), p to the false negatives when it predicted 0
(1 - p to the true negatives). Precision, recall and accuracy follow from the expected confusion matrix. ROC AUC is
the area under the expected ROC curve: rows in descending order of the model's score, the cumulative expected
positives and negatives as the curve's axes, tied scores one step (NannyML 0.13.1's `estimate_roc_auc` steps row by
row: the same area, since tied scores share a calibrated probability).

Given outcomes (0/1) instead of probabilities, the same code computes the realized metrics: tied scores as one
step make the area scikit-learn's ROC AUC.

Standard error: that of the metric measured on as many rows as the segment holds, with the segment's own expected
class balance (NannyML derives it from the reference period instead): sqrt(m (1 - m) / n) with n the rows for
accuracy, the predicted positives for precision and the expected positives for recall, and Hanley & McNeil's (1982)
variance for ROC AUC. It bounds both how far the realized metric may land from the estimate and how far the
estimate moves between samples of the same traffic; it does not cover a calibration that no longer holds
(concept drift), which only outcomes reveal.

Every sum is a `np.bincount` over segment codes and ROC AUC uses one sort of all rows (packed keys, see
`_sorted_for_roc`): no per-row or per-segment Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRICS = ("roc_auc", "precision", "recall", "accuracy")


@dataclass(frozen=True)
class Segments:
    """Per segment (arrays of length k, NaN where a metric is undefined)."""

    rows: np.ndarray
    positives: np.ndarray  # expected (or realized) positives
    predicted_positives: np.ndarray
    values: dict[str, np.ndarray]
    standard_errors: dict[str, np.ndarray]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _binomial_se(value: np.ndarray, n: np.ndarray) -> np.ndarray:
    return np.sqrt(_ratio(value * (1.0 - value), n))


def _sorted_for_roc(codes: np.ndarray, k: int, score: np.ndarray, outcome: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows by segment, then by score from high to low: (segment, score rank key, target) sorted, the target being
    the outcome when given, else the score itself.

    One np.sort of packed uint64 keys (segment | score | outcome bit), several times faster than an argsort or a
    lexsort of 10M rows, and no gather. Scores (in [0, 1], as the callers check) are kept to
    2**-min(52, 62 - segment bits) (2e-13 for a million segments), so scores closer than that count as tied."""
    bits = max(1, int(k - 1).bit_length())
    if bits > 40:
        raise ValueError(f"{k} segments: too many to rank at once")
    shift = 62 - bits
    scale = float(2 ** min(shift, 52) - 1)  # exact in float64, and below 2**shift
    work = np.subtract(1.0, score)  # descending score, ascending key; in place from here: 10M rows are 80 MB a copy
    np.multiply(work, scale, out=work)
    np.rint(work, out=work)
    key = work.astype(np.uint64)
    del work
    key <<= np.uint64(1)
    if outcome is not None:
        key |= np.asarray(outcome, dtype=np.uint64)
    key |= codes.astype(np.uint64) << np.uint64(shift + 1)
    key.sort()
    c = (key >> np.uint64(shift + 1)).astype(np.int64)
    target = (key & np.uint64(1)).astype(np.float64) if outcome is not None else None
    key >>= np.uint64(1)
    key &= np.uint64(2**shift - 1)  # the score's rank
    if target is None:  # an estimate: the score itself is the target
        target = key.astype(np.float64)
        np.divide(target, -scale, out=target)
        target += 1.0
    return c, key, target


def _roc_auc(c: np.ndarray, rank: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """Area under the (expected) ROC curve of every segment, from rows sorted by `_sorted_for_roc`.

    The running sums run across segments (no restart, no per-row gather): a segment's first step then starts from
    the totals of the segments before it, which adds their positives times this segment's negatives to its
    trapezoid sum; that is taken back at the end."""
    if c.size == 0:
        return np.full(k, np.nan)
    positives = np.bincount(c, weights=t, minlength=k)
    negatives = np.bincount(c, minlength=k) - positives
    tp = np.cumsum(t)
    step = np.ones(c.size, dtype=bool)  # the last row of each run of tied scores is a point of the curve
    step[:-1] = (c[1:] != c[:-1]) | (rank[1:] != rank[:-1])
    if step.all():
        fp = np.arange(1, c.size + 1, dtype=np.float64)
        fp -= tp
    else:
        points = np.flatnonzero(step)
        c, tp = c[points], tp[points]
        fp = (points + 1) - tp  # rows so far minus expected positives so far
    # Twice each trapezoid: (fp_i - fp_i-1) * (tp_i + tp_i-1), from (0, 0); three arrays in all (10M rows: 80 MB each)
    doubled = np.empty_like(tp)
    doubled[0] = fp[0] * tp[0]
    np.subtract(fp[1:], fp[:-1], out=doubled[1:])
    np.add(tp[1:], tp[:-1], out=fp[1:])
    np.multiply(doubled[1:], fp[1:], out=doubled[1:])
    doubled = np.bincount(c, weights=doubled, minlength=k)
    before = np.cumsum(positives) - positives  # positives of the segments sorted before each one
    return _ratio(doubled / 2.0 - before * negatives, positives * negatives)


def _hanley_mcneil_se(auc: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc**2 / (1.0 + auc)
    variance = _ratio(auc * (1.0 - auc) + (positives - 1.0) * (q1 - auc**2) + (negatives - 1.0) * (q2 - auc**2),
                      positives * negatives)
    return np.sqrt(np.clip(variance, 0.0, None))


def estimate_segments(codes: np.ndarray, k: int, calibrated: np.ndarray, predicted: np.ndarray) -> Segments:
    """The estimated metrics per segment. `codes` (ints in [0, k)) name each row's segment, `calibrated` is the
    row's calibrated probability, `predicted` the model's decision at its threshold.

    ROC AUC ranks the rows by the calibrated probability, which keeps the model's own ranking: every calibrator
    (training/calibration.py) is non-decreasing. NannyML ranks by the raw score; where a calibrator ties different
    scores, their rows share one calibrated probability and the expected curve runs straight across them in either
    order, so the area is the same, and no gather of the calibrated values into score order is needed."""
    codes = np.asarray(codes, dtype=np.int64)
    calibrated = np.asarray(calibrated, dtype=np.float64)
    auc = _roc_auc(*_sorted_for_roc(codes, k, calibrated, None), k)  # the sorted copies go before the sums
    return _segments(codes, k, calibrated, predicted, auc)


def realized_segments(codes: np.ndarray, k: int, score: np.ndarray, predicted: np.ndarray,
                      outcome: np.ndarray) -> Segments:
    """The same metrics measured on outcomes (0/1): the expected confusion matrix of certain probabilities."""
    codes = np.asarray(codes, dtype=np.int64)
    auc = _roc_auc(*_sorted_for_roc(codes, k, np.asarray(score, dtype=np.float64), outcome), k)
    return _segments(codes, k, np.asarray(outcome, dtype=np.float64), predicted, auc)


def _segments(codes: np.ndarray, k: int, target: np.ndarray, predicted: np.ndarray, auc: np.ndarray) -> Segments:
    # Rows and target sums per (segment, decision) in two bincounts: no float copy of the decisions.
    split = np.multiply(codes, 2)
    split += np.asarray(predicted, dtype=bool)
    counts = np.bincount(split, minlength=2 * k).reshape(k, 2).astype(np.float64)
    sums = np.bincount(split, weights=target, minlength=2 * k).reshape(k, 2)
    del split
    rows = counts.sum(axis=1)
    predicted_positives = counts[:, 1]
    positives = sums.sum(axis=1)
    tp = sums[:, 1]
    tn = counts[:, 0] - sums[:, 0]
    precision = _ratio(tp, predicted_positives)
    recall = _ratio(tp, positives)
    accuracy = _ratio(tp + tn, rows)
    return Segments(
        rows=rows.astype(np.int64),
        positives=positives,
        predicted_positives=predicted_positives.astype(np.int64),
        values={"roc_auc": auc, "precision": precision, "recall": recall, "accuracy": accuracy},
        standard_errors={
            "roc_auc": _hanley_mcneil_se(auc, positives, rows - positives),
            "precision": _binomial_se(precision, predicted_positives),
            "recall": _binomial_se(recall, positives),
            "accuracy": _binomial_se(accuracy, rows),
        },
    )
