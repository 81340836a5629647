"""The A/B verdict: is variant `a` better or worse than variant `b` on each quality metric, or not yet known?

Estimates. ROC AUC with DeLong's variance (structural components from midranks, Sun & Xu's fast form); log loss
and Brier score as means of per-row losses with their sample variances. The two arms are independent samples,
so the difference's variance is the sum of the two.

Two intervals per metric:
- `ci95`: the usual fixed-sample 95% interval (normal, DeLong / Welch). Correct only if this were the one and
  only look at the data: checking it after every batch of outcomes and stopping when it excludes zero inflates
  false positives many times over (tests/test_abtest.py measures it).
- `always_valid`: a confidence sequence from the mixture sequential probability ratio test (mSPRT) with a normal
  mixture (Johari, Koomen, Pekelis & Walsh, "Always valid inference", 2017/2022; the form Optimizely uses). It
  holds simultaneously at every look, so the job may run every hour on a growing window and stop the test the
  first time a verdict appears. Its level is 1 - alpha / (number of verdict metrics) per metric (Bonferroni), so
  the chance that a pair of identical variants is ever declared different on any metric, at any look, stays under
  alpha = 5%.

Verdict (for `a` against `b`): `better` or `worse` when the always-valid interval excludes zero, otherwise
`not yet significant` with the outcomes still needed: how many more (both arms together, split as so far) would
make the always-valid interval exclude zero if the observed difference held.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm, rankdata

ALPHA = 0.05
# metric -> (higher is better, mixture scale tau: the size of difference the test is most sensitive to)
VERDICT_METRICS: dict[str, tuple[bool, float]] = {
    "roc_auc": (True, 0.02),
    "log_loss": (False, 0.03),
    "brier": (False, 0.01),
}
EPS = 1e-15


@dataclass(frozen=True)
class Estimate:
    value: float
    variance: float  # of the estimate
    rows: int


def auc_delong(y: np.ndarray, p: np.ndarray) -> Estimate | None:
    """ROC AUC and DeLong's variance; None when one class is missing."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    positives, negatives = p[y], p[~y]
    m, n = positives.size, negatives.size
    if m < 2 or n < 2:
        return None
    ranks = rankdata(np.concatenate([positives, negatives]))
    within_pos = rankdata(positives)
    within_neg = rankdata(negatives)
    v10 = (ranks[:m] - within_pos) / n  # per positive: share of negatives it outranks
    v01 = 1.0 - (ranks[m:] - within_neg) / m  # per negative: share of positives that outrank it
    auc = float(v10.mean())
    variance = float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    return Estimate(auc, variance, int(y.size))


def row_losses(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    if metric == "log_loss":
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    if metric == "brier":
        return (p - y) ** 2
    raise ValueError(f"no per-row loss for {metric!r}")


def estimate(metric: str, y: np.ndarray, p: np.ndarray) -> Estimate | None:
    if metric == "roc_auc":
        return auc_delong(y, p)
    losses = row_losses(metric, y, p)
    if losses.size < 2:
        return None
    return Estimate(float(losses.mean()), float(losses.var(ddof=1) / losses.size), int(losses.size))


def always_valid_halfwidth(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the normal-mixture mSPRT confidence sequence at this look."""
    if variance <= 0:
        return 0.0
    t2 = tau * tau
    return math.sqrt(variance * (variance + t2) / t2 * (2 * math.log(1 / alpha) + math.log((variance + t2) / variance)))


def outcomes_needed(difference: float, variance: float, rows: int, tau: float, alpha: float) -> int | None:
    """More outcomes (both arms) until the always-valid interval would exclude zero at this difference."""
    if difference == 0 or variance <= 0 or rows <= 0:
        return None
    if always_valid_halfwidth(variance, tau, alpha) < abs(difference):
        return 0
    low, high = 1.0, 2.0
    while always_valid_halfwidth(variance / high, tau, alpha) >= abs(difference):
        high *= 2
        if high > 1e9:
            return None
    for _ in range(60):  # bisect the growth factor of the sample
        middle = (low + high) / 2
        if always_valid_halfwidth(variance / middle, tau, alpha) < abs(difference):
            high = middle
        else:
            low = middle
    return int(math.ceil(rows * (high - 1)))


@dataclass
class Comparison:
    metric: str
    a: str
    b: str
    value_a: float | None
    value_b: float | None
    difference: float | None  # a - b
    ci95: tuple[float, float] | None
    always_valid: tuple[float, float] | None
    always_valid_level: float
    verdict: str  # for a against b: better, worse, not yet significant
    outcomes_needed: int | None
    rows_a: int
    rows_b: int

    def as_dict(self) -> dict:
        return asdict(self)


def compare(a: str, b: str, ya: np.ndarray, pa: np.ndarray, yb: np.ndarray, pb: np.ndarray,
            alpha: float = ALPHA) -> list[Comparison]:
    """Every verdict metric of arm `a` against arm `b` (outcomes y, predicted probabilities p)."""
    level_alpha = alpha / len(VERDICT_METRICS)
    z95 = float(norm.ppf(0.975))
    out = []
    for metric, (higher_better, tau) in VERDICT_METRICS.items():
        ea, eb = estimate(metric, ya, pa), estimate(metric, yb, pb)
        if ea is None or eb is None:
            out.append(Comparison(metric, a, b, ea and ea.value, eb and eb.value, None, None, None, 1 - level_alpha,
                                  "not yet significant", None, len(ya), len(yb)))
            continue
        difference = ea.value - eb.value
        variance = ea.variance + eb.variance
        half95 = z95 * math.sqrt(variance)
        half = always_valid_halfwidth(variance, tau, level_alpha)
        if abs(difference) > half:
            verdict = "better" if (difference > 0) == higher_better else "worse"
            needed = 0
        else:
            verdict = "not yet significant"
            needed = outcomes_needed(difference, variance, len(ya) + len(yb), tau, level_alpha)
        out.append(Comparison(
            metric, a, b, round(ea.value, 6), round(eb.value, 6), round(difference, 6),
            (round(difference - half95, 6), round(difference + half95, 6)),
            (round(difference - half, 6), round(difference + half, 6)), round(1 - level_alpha, 6),
            verdict, needed, len(ya), len(yb),
        ))
    return out


VERDICT_CODES = {"better": 1.0, "worse": -1.0, "not yet significant": 0.0}
