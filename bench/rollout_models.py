"""Model versions a rollout test or benchmark needs, made from a stored model and saved as new versions of it (the
servers unpickle these classes: `bentoml serve .` runs from the project folder, so `bench.rollout_models` imports
there; never in a store a user serves from elsewhere).

    python -m bench.rollout_models degraded purchase_gbm:VERSION   # prints the new tag (BENTOML_HOME: the store)

- `copy`: the same pipeline again: a candidate that is neither better nor worse.
- `degraded`: the same pipeline, but every other row of a batch gets its neighbour's probability: the predicted
  probabilities keep their distribution exactly (no drift to see), while their ranking gets much worse (ROC AUC
  about 0.87 -> 0.68 on the purchase data). A single row is scored as is, so its warm-up passes.
- `uninformed`: the same pipeline, but every tenth row of a batch gets the score whose calibrated probability is
  the reference sample's mean: still calibrated (a row picked by position has the base rate's chance), but a tenth
  of the rows ranked by nothing, so its ROC AUC drops (about 0.87 -> 0.85) while its predicted probabilities shift
  less than a rollout's drift gate fails on; the label-free estimate (CBPE) sees it before any outcome. Every
  variant keeps the original's calibrator (training/calibration.py).
- `raising`: raises on every call except its warm-up (the first row of its own reference sample, which the
  registry scores before it serves a version): a model that loads and then fails all traffic.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


class Degraded:
    def __init__(self, inner):
        self.inner = inner

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        proba = self.inner.predict_proba(features)
        mixed = np.arange(len(proba)) % 2 == 0
        proba[mixed] = np.roll(proba[mixed], 1, axis=0)
        return proba


class Uninformed:
    def __init__(self, inner, score: float):
        self.inner, self.score = inner, score

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        proba = self.inner.predict_proba(features)
        mixed = np.arange(len(proba)) % 10 == 9  # a single row (the warm-up) is scored as is
        proba[mixed] = [1 - self.score, self.score]
        return proba


def base_rate_score(estimator, features: pd.DataFrame, calibrator) -> float:
    """The model's score on `features` whose calibrated probability is closest to their mean calibrated one."""
    scores = np.sort(estimator.predict_proba(features)[:, 1])
    calibrated = calibrator.apply(scores) if calibrator is not None else scores
    return float(scores[np.argmin(np.abs(calibrated - calibrated.mean()))])


class Raising:
    def __init__(self, inner, warm_up: pd.DataFrame):
        self.inner = inner
        self.warm_up = warm_up.reset_index(drop=True)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        if len(features) == 1 and features.reset_index(drop=True).equals(self.warm_up):
            return self.inner.predict_proba(features)
        raise RuntimeError("this model raises on every call")


def make(kind: str, tag: str) -> str:
    from training.features import build_features
    from training.store import load_model, save_model

    original = load_model(tag)
    estimator = original.estimator
    if kind == "degraded":
        estimator = Degraded(estimator)
    elif kind == "uninformed":
        features = build_features(original.task, original.reference()[list(original.input_schema["columns"])])
        estimator = Uninformed(estimator, base_rate_score(estimator, features, original.calibrator()))
    elif kind == "raising":
        warm_up = original.reference()[list(original.input_schema["columns"])].head(1)
        estimator = Raising(estimator, build_features(original.task, warm_up))
    elif kind != "copy":
        raise ValueError(f"unknown kind {kind!r}")
    metadata = {k: v for k, v in original.metadata.items() if k not in ("has_bound_dataset", "versions")}
    return save_model(original.name, estimator, labels={**original.labels, "stage": "archived", "test_kind": kind},
                      metadata=metadata, reference=original.reference(), bound=original.bound,
                      calibrator=original.calibrator())


if __name__ == "__main__":
    # Through the module's own name, so the pickled classes are bench.rollout_models', not __main__'s.
    from bench.rollout_models import make as make_version

    print(make_version(sys.argv[1], sys.argv[2]))
