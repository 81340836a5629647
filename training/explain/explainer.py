"""Per-input contributions of one stored model version: the exact Shapley values (training/explain/shapley.py) of
its raw inputs (the seed fields, not the encoded columns), against a background sample of its own reference.

    from training.explain.explainer import Explainer
    explanation = Explainer(model).explain(frame)          # frame: validated raw inputs
    explanation.base_value + explanation.contributions.sum(axis=1) == explanation.values   # to 1e-12

The output explained is the model's probability of the positive class (the number every endpoint answers), or its
log-odds (`output="log_odds"`, the scale on which the trees and the linear model add up their parts).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any, Literal

import numpy as np
import pandas as pd

from training.explain.encoding import model_features
from training.explain.shapley import shapley_values
from training.features import build_features
from training.store import PREDICTION, StoredModel

OutputSpace = Literal["probability", "log_odds"]
OUTPUTS: tuple[OutputSpace, ...] = ("probability", "log_odds")
BACKGROUND_ROWS = 100
BACKGROUND_SEED = 0


@dataclass(frozen=True)
class Explanation:
    """Contributions of each input to each record's output: base_value + contributions.sum(axis=1) == values."""

    model_name: str
    model_version: str
    inputs: list[str]
    contributions: np.ndarray  # (records, inputs)
    values: np.ndarray  # (records,): the model's output on each record, in `output` space
    base_value: float  # the mean output on the background sample
    output: OutputSpace
    background_rows: int
    background: str = "at evenly spaced quantiles of its predictions"  # how those rows were drawn

    @property
    def method(self) -> str:
        k = len(self.inputs)
        return (f"exact Shapley values: all {2**k} coalitions of the model's {k} inputs; an input outside a coalition "
                f"takes the values of {self.background_rows} rows of the model's reference sample, {self.background} "
                "(interventional)")

    def record(self, index: int) -> dict[str, Any]:
        """One record's answer: its output, and each input's contribution, largest magnitude first."""
        row = self.contributions[index]
        order = np.argsort(-np.abs(row), kind="stable")
        return {
            "value": float(self.values[index]),
            "base_value": self.base_value,
            "contributions": {self.inputs[i]: float(row[i]) for i in order},
        }

    def records(self) -> list[dict[str, Any]]:
        return [self.record(i) for i in range(len(self.values))]

    def mean_absolute(self) -> dict[str, float]:
        """The global view: each input's mean absolute contribution over the records."""
        means = np.abs(self.contributions).mean(axis=0) if len(self.values) else np.zeros(len(self.inputs))
        return {name: float(value) for name, value in zip(self.inputs, means)}


def model_score(model: StoredModel, output: OutputSpace, estimator: Any = None):
    """The function explained, on the rows `estimator` takes (the model's pipeline by default, so its feature rows):
    probability of the positive class, or its log-odds."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    estimator = model.estimator if estimator is None else estimator
    if estimator is None:
        raise ValueError(f"{model.tag} was loaded without its pipeline; it cannot be explained")

    def probability(features: pd.DataFrame) -> np.ndarray:
        return estimator.predict_proba(features)[:, 1]

    def log_odds(features: pd.DataFrame) -> np.ndarray:
        if hasattr(estimator, "decision_function"):  # both served model families: the exact raw score
            return np.asarray(estimator.decision_function(features), dtype=np.float64).reshape(-1)
        p = np.clip(estimator.predict_proba(features)[:, 1], 1e-15, 1 - 1e-15)
        return np.log(p) - np.log1p(-p)

    return probability if output == "probability" else log_odds


def model_output(model: StoredModel, output: OutputSpace):
    """The function explained, on raw input rows (the model's features made first)."""
    score, task = model_score(model, output), model.task
    return lambda raw: score(build_features(task, raw))


def by_quantiles(reference: pd.DataFrame, how: str) -> bool:
    return how == "quantiles" and PREDICTION in reference.columns


def background_sample(reference: pd.DataFrame, inputs: list[str], rows: int, seed: int = BACKGROUND_SEED,
                      how: Literal["quantiles", "random"] = "quantiles") -> pd.DataFrame:
    """`rows` rows of the reference sample that stand in for absent inputs.

    `quantiles` (the default): the rows at evenly spaced quantiles of the reference's stored predicted probability,
    so the background spans the model's whole range of answers. Measured on purchase_gbm against the whole
    5,000-row reference as the truth (bench/explain_methods.py): at 100 rows the base value is off by 0.001 and a
    contribution by 0.005 on average (0.015 at most), where a seeded random sample of 100 rows was off by 0.04 and
    0.009 (0.043), and one of 200 rows by 0.02 and 0.005. `random`: a seeded uniform sample (the fallback for a
    reference without predictions). Either way the same record gets the same explanation in an audit months later."""
    rows = min(rows, len(reference))
    if by_quantiles(reference, how):
        ordered = reference.sort_values(PREDICTION, kind="stable")
        chosen = ordered.iloc[np.round(np.linspace(0, len(ordered) - 1, rows)).astype(np.int64)]
    else:
        chosen = reference.sample(n=rows, random_state=seed)
    return chosen[inputs].reset_index(drop=True)


class Explainer:
    """Explains one model version against a background sample of its own reference sample (`background_sample`)."""

    def __init__(self, model: StoredModel, background_rows: int = BACKGROUND_ROWS, seed: int = BACKGROUND_SEED,
                 how: Literal["quantiles", "random"] = "quantiles"):
        self.model = model
        self.inputs = list(model.input_schema["columns"])
        reference = model.reference()
        missing = [c for c in self.inputs if c not in reference.columns]
        if missing:
            raise ValueError(f"{model.tag}: the reference sample lacks input(s) {', '.join(missing)}")
        self.background = background_sample(reference, self.inputs, background_rows, seed, how)
        self.drawn = ("at evenly spaced quantiles of its predictions" if by_quantiles(reference, how)
                      else f"drawn at random (seed {seed})")
        self._outputs = {space: model_output(model, space) for space in OUTPUTS}
        self.features, scored_by = model_features(model, self.background)
        self._scores = {space: model_score(model, space, scored_by) for space in OUTPUTS}

    def explain(self, frame: pd.DataFrame, output: OutputSpace = "probability") -> Explanation:
        """Contributions for validated raw input rows (columns: the model's inputs)."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        records = frame[self.inputs].reset_index(drop=True)
        if records.empty:
            contributions, base = np.empty((0, len(self.inputs))), float(self._outputs[output](self.background).mean())
            return Explanation(self.model.name, self.model.version, self.inputs, contributions, np.empty(0), base,
                               output, len(self.background), self.drawn)
        contributions, values = shapley_values(self._scores[output], records, self.background, self.features)
        return Explanation(
            model_name=self.model.name, model_version=self.model.version, inputs=self.inputs,
            contributions=contributions, values=values[:, -1], base_value=float(values[0, 0]), output=output,
            background_rows=len(self.background), background=self.drawn,
        )


class Explainers:
    """Explainers by model tag, the most recently used few kept (a background sample and a pipeline each)."""

    def __init__(self, size: int = 8, background_rows: int = BACKGROUND_ROWS):
        self.size, self.background_rows = size, background_rows
        self._cache: OrderedDict[str, Explainer] = OrderedDict()
        self._lock = Lock()

    def get(self, model: StoredModel) -> Explainer:
        with self._lock:
            explainer = self._cache.get(model.tag)
            if explainer is not None:
                self._cache.move_to_end(model.tag)
                return explainer
        explainer = Explainer(model, self.background_rows)  # outside the lock: it reads the reference sample
        with self._lock:
            self._cache[model.tag] = explainer
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return explainer
