"""Is a model's probability calibrated, and the calibrator stored with it when it is not.

The label-free quality estimate (monitoring/quality/estimate.py) reads a calibrated probability as the chance that
the outcome will be 1, so it needs one. The check runs at training on the held-out split (the drift reference
sample is drawn from the training split, where a boosted model looks better calibrated than it is):

1. the expected calibration error (ECE: 10 equal-count bins) of the raw probabilities;
2. the ECE the same probabilities would show if they were perfectly calibrated: labels drawn from the
   probabilities themselves, NULL_DRAWS times; its 95th percentile is the noise floor at this sample size;
3. raw ECE at or below the noise floor: no calibrator (one would only fit noise); above it: isotonic regression and
   Platt scaling (scikit-learn's) are scored by their out-of-fold ECE (FOLDS stratified folds), and the better one
   is fitted on the whole held-out split and stored, if it beats the raw ECE.

A calibrator is stored as its fitted numbers (`calibrator.json`: isotonic breakpoints, or Platt's slope and
intercept), applied with NumPy: no pickle to load, nothing version-bound, vectorized over millions of rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

ECE_BINS = 10
FOLDS = 5
NULL_DRAWS = 200
NULL_QUANTILE = 0.95
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """A fitted probability map: `none` (the identity), `isotonic` (piecewise linear through `x`, `y`, clipped at
    the ends, as scikit-learn's IsotonicRegression(out_of_bounds="clip") predicts) or `platt` (sigmoid of
    slope * logit(p) + intercept)."""

    method: str = "none"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(p, self.x, self.y)
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.slope * _logit(p) + self.intercept)))
        return p

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        data = json.loads(text)
        if data.get("method") not in ("none", "isotonic", "platt"):
            raise ValueError(f"unknown calibration method {data.get('method')!r}")
        return cls(method=data["method"], x=tuple(data.get("x", ())), y=tuple(data.get("y", ())),
                   slope=float(data.get("slope", 1.0)), intercept=float(data.get("intercept", 0.0)))


def _bins(p: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-count bins over p (as training/evaluate.py's calibration table): (bin of each row, rows per bin)."""
    order = np.argsort(p, kind="stable")
    sizes = np.array([len(c) for c in np.array_split(np.arange(p.size), bins)])
    index = np.empty(p.size, dtype=np.int64)
    index[order] = np.repeat(np.arange(bins), sizes)
    return index, sizes


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |predicted - observed| over equal-count bins, weighted by rows."""
    index, sizes = _bins(p, bins)
    predicted = np.bincount(index, weights=p, minlength=bins)
    observed = np.bincount(index, weights=y.astype(np.float64), minlength=bins)
    return float(np.abs(predicted - observed).sum() / p.size)


def null_ece(p: np.ndarray, draws: int = NULL_DRAWS, seed: int = 0, bins: int = ECE_BINS) -> np.ndarray:
    """ECE of `draws` label sets drawn from p itself: what a perfectly calibrated model shows by chance."""
    rng = np.random.default_rng(seed)
    index, _ = _bins(p, bins)
    predicted = np.bincount(index, weights=p, minlength=bins)
    values = np.empty(draws)
    for d in range(draws):  # one vectorized draw of every row per step
        observed = np.bincount(index, weights=(rng.random(p.size) < p).astype(np.float64), minlength=bins)
        values[d] = np.abs(predicted - observed).sum() / p.size
    return values


def fit_isotonic(p: np.ndarray, y: np.ndarray) -> Calibrator:
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
    return Calibrator("isotonic", x=tuple(map(float, model.X_thresholds_)), y=tuple(map(float, model.y_thresholds_)))


def fit_platt(p: np.ndarray, y: np.ndarray) -> Calibrator:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, max_iter=1_000).fit(_logit(p)[:, None], y)
    return Calibrator("platt", slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]))


FITTERS = {"isotonic": fit_isotonic, "platt": fit_platt}


def out_of_fold(p: np.ndarray, y: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Each row's probability calibrated by `method` fitted on the other folds."""
    from sklearn.model_selection import StratifiedKFold

    calibrated = np.empty_like(p)
    for fit_rows, held_rows in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(p, y):
        calibrated[held_rows] = FITTERS[method](p[fit_rows], y[fit_rows]).apply(p[held_rows])
    return calibrated


@dataclass(frozen=True)
class CalibrationCheck:
    """The decision and the figures behind it, stored in the model's metadata (`calibration`)."""

    method: str
    rows: int
    ece: float  # raw probabilities on the held-out split
    ece_noise_p95: float  # 95th percentile of the ECE a perfectly calibrated model shows on as many rows
    ece_out_of_fold: dict[str, float] = field(default_factory=dict)  # per candidate, when one was tried
    reason: str = ""
    calibrator: Calibrator = field(default_factory=Calibrator)

    def metadata(self) -> dict:
        return {"method": self.method, "rows": self.rows, "ece": self.ece, "ece_noise_p95": self.ece_noise_p95,
                "ece_out_of_fold": self.ece_out_of_fold, "reason": self.reason,
                "criterion": f"calibrate when the held-out ECE ({ECE_BINS} equal-count bins) exceeds the "
                             f"{NULL_QUANTILE:.0%} quantile of a perfectly calibrated model's ECE on as many rows "
                             f"({NULL_DRAWS} draws); then the candidate (isotonic, Platt) with the lower "
                             f"{FOLDS}-fold out-of-fold ECE, if it beats the raw ECE"}


def check_calibration(y: np.ndarray, p: np.ndarray, seed: int = 0) -> CalibrationCheck:
    """Decide whether held-out probabilities `p` (labels `y`) need a calibrator, and fit it."""
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    ece = expected_calibration_error(y, p)
    floor = float(np.quantile(null_ece(p, seed=seed), NULL_QUANTILE))
    common = {"rows": int(p.size), "ece": round(ece, 5), "ece_noise_p95": round(floor, 5)}
    if ece <= floor:
        return CalibrationCheck("none", **common, reason="calibrated within sampling noise")
    scores = {m: round(expected_calibration_error(y, out_of_fold(p, y, m, seed)), 5) for m in FITTERS}
    best = min(scores, key=scores.get)
    if scores[best] >= ece:
        return CalibrationCheck("none", **common, ece_out_of_fold=scores, reason="no calibrator beat the raw ECE")
    return CalibrationCheck(best, **common, ece_out_of_fold=scores, reason=f"miscalibrated; {best} lowers the ECE",
                            calibrator=FITTERS[best](p, y))
