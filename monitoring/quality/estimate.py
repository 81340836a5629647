"""Label-free quality estimates: ROC AUC, precision, recall and accuracy of a binary classifier from its logged
probabilities alone, before any outcome arrives (CBPE, monitoring/quality/cbpe.py), per group of predictions, each
with a standard error; the quality job (monitoring/quality/window_estimates.py) puts them beside the realized
metrics.

The entry point for other code, e.g. a rollout gate on a canary:

    from monitoring.quality.estimate import ModelCalibration, estimate_quality

    calibrations = {(name, version): ModelCalibration.from_store(name, version)}
    for group in estimate_quality(predictions, calibrations, by=("model_name", "model_version", "alias")):
        auc = group.metrics["roc_auc"]
        if group.enough("roc_auc", half_width=0.02): ...   # else: not yet enough rows

`predictions` holds the logged columns `model_name`, `model_version`, `probability`, any `by` column, and `ts`
when `chunk` is given. What the estimate assumes: the calibrated probability still is the chance of a 1 for rows
like these (covariate shift keeps that; a changed relation between inputs and outcome, concept drift, does not,
and only outcomes reveal it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from monitoring.quality.cbpe import METRICS, Segments, estimate_segments
from monitoring.quality.segment_codes import Factorized, chunk_codes, segment_codes
from training.calibration import Calibrator

DEFAULT_BY = ("model_name", "model_version")
Z95 = 1.959963984540054
CHUNK_COLUMN = "chunk"


@dataclass(frozen=True)
class ModelCalibration:
    """What the estimate needs from a model version: its decision threshold and the calibrator chosen at training
    (training/calibration.py). `checked` is False for a model trained before the check: its probabilities are used
    as they are."""

    threshold: float
    calibrator: Calibrator = field(default_factory=Calibrator)
    checked: bool = True

    @classmethod
    def from_store(cls, name: str, version: str) -> ModelCalibration:
        """From the model store (metadata and calibrator.json, no pipeline loaded); LookupError when missing."""
        import bentoml

        from training.store import load_model

        try:
            model = load_model(f"{name}:{version}", estimator=False)
        except (bentoml.exceptions.NotFound, ValueError):
            raise LookupError(f"model {name}:{version} is not in the model store") from None
        calibrator = model.calibrator()
        return cls(model.threshold, calibrator or Calibrator(), calibrator is not None)

    def describe(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "calibrator": self.calibrator.method if self.checked else "not checked"}


@dataclass(frozen=True)
class MetricEstimate:
    """One metric's estimate and its standard error (None when undefined: e.g. precision with no predicted 1)."""

    value: float | None
    standard_error: float | None

    @property
    def ci95(self) -> tuple[float, float] | None:
        if self.value is None or self.standard_error is None:
            return None
        half = Z95 * self.standard_error
        return max(0.0, self.value - half), min(1.0, self.value + half)

    def as_dict(self, digits: int = 5) -> dict[str, Any]:
        ci = self.ci95
        return {"value": _round(self.value, digits), "standard_error": _round(self.standard_error, digits),
                "ci95": [round(ci[0], digits), round(ci[1], digits)] if ci else None}


@dataclass(frozen=True)
class GroupEstimate:
    """The estimates of one group of predictions (the values of the `by` columns, and the chunk's start)."""

    group: dict[str, Any]
    rows: int
    expected_positive_rate: float | None
    predicted_positive_rate: float | None
    metrics: dict[str, MetricEstimate]

    def enough(self, metric: str, half_width: float) -> bool:
        """Whether the 95% interval of `metric` is at most +-half_width: a gate's "enough rows yet"."""
        estimate = self.metrics[metric]
        return estimate.standard_error is not None and Z95 * estimate.standard_error <= half_width

    def as_dict(self) -> dict[str, Any]:
        return {**{k: _plain(v) for k, v in self.group.items()}, "rows": self.rows,
                "expected_positive_rate": _round(self.expected_positive_rate, 5),
                "predicted_positive_rate": _round(self.predicted_positive_rate, 5),
                "estimate": {m: e.as_dict() for m, e in self.metrics.items()}}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _number(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


# ------------------------------------------------------------------------------------ the vectorized machinery


@dataclass(frozen=True)
class Scored:
    """The rows ready for cbpe: the model's score, its calibrated probability (through the calibrator of the row's
    model version) and its decision at that version's threshold."""

    score: np.ndarray
    calibrated: np.ndarray
    predicted: np.ndarray


def score_rows(frame: pd.DataFrame, columns: Factorized,
               calibrations: Mapping[tuple[str, str], ModelCalibration]) -> Scored:
    """ValueError naming a model version without a calibration, or a probability outside [0, 1]."""
    version_of_row, versions = segment_codes(columns, DEFAULT_BY)
    score = frame["probability"].to_numpy(dtype=np.float64)
    bad = ~((score >= 0.0) & (score <= 1.0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"probability of row {first} is {float(score[first])}: expected a number in [0, 1]")
    calibrated = np.empty_like(score)
    thresholds = np.empty(len(versions))
    for index, (name, version) in enumerate(versions.itertuples(index=False)):  # a handful of versions
        known = calibrations.get((str(name), str(version)))
        if known is None:
            raise ValueError(f"no calibration given for model version {name}:{version}")
        rows = version_of_row == index
        calibrated[rows] = known.calibrator.apply(score[rows])
        thresholds[index] = known.threshold
    return Scored(score, calibrated, score >= thresholds[version_of_row])


def estimate_codes(scored: Scored, codes: np.ndarray, k: int, rows: np.ndarray | None = None) -> Segments:
    """cbpe's estimates for segments `codes` (of the `rows` selected, all when None)."""
    if rows is None:
        return estimate_segments(codes, k, scored.calibrated, scored.predicted)
    return estimate_segments(codes, k, scored.calibrated[rows], scored.predicted[rows])


def metric_estimates(segments: Segments, i: int) -> dict[str, MetricEstimate]:
    return {m: MetricEstimate(_number(segments.values[m][i]), _number(segments.standard_errors[m][i]))
            for m in METRICS}


def group_estimates(segments: Segments, keys: pd.DataFrame) -> list[GroupEstimate]:
    records = keys.to_dict("records")
    out = []
    for i, group in enumerate(records):  # one entry per segment (groups x chunks), never per row
        rows = int(segments.rows[i])
        out.append(GroupEstimate(
            group=group, rows=rows,
            expected_positive_rate=_number(segments.positives[i] / rows) if rows else None,
            predicted_positive_rate=_number(segments.predicted_positives[i] / rows) if rows else None,
            metrics=metric_estimates(segments, i),
        ))
    return out


# -------------------------------------------------------------------------------------------------- the API


def estimate_quality(predictions: pd.DataFrame, calibrations: Mapping[tuple[str, str], ModelCalibration],
                     by: Sequence[str] = DEFAULT_BY, chunk: str | None = None) -> list[GroupEstimate]:
    """Estimated ROC AUC, precision, recall and accuracy (each with its standard error and 95% interval) per group
    of logged predictions: per value of the `by` columns (model_name and model_version are always among them:
    each version has its own calibrator and threshold), and per `chunk` of time when given (a pandas frequency:
    "1h"; the chunk's start is the group's `chunk`). Groups come sorted by their values.

    Raises ValueError for a model version missing from `calibrations`, a probability outside [0, 1], or missing
    columns."""
    columns = list(dict.fromkeys([*DEFAULT_BY, *by]))
    needed = [*columns, "probability", *(["ts"] if chunk else [])]
    missing = [c for c in needed if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack the column(s) {', '.join(missing)}")
    if predictions.empty:
        return []
    factorized = Factorized(predictions)
    if chunk:
        factorized.put(CHUNK_COLUMN, *chunk_codes(predictions["ts"], chunk))
        columns.append(CHUNK_COLUMN)
    scored = score_rows(predictions, factorized, calibrations)
    codes, keys = segment_codes(factorized, columns)
    return group_estimates(estimate_codes(scored, codes, len(keys)), keys)
