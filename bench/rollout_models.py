"""Model versions a rollout test or benchmark needs, made from a stored model and saved as new versions of it (the
servers unpickle these classes: `bentoml serve .` runs from the project folder, so `bench.rollout_models` imports
there; never in a store a user serves from elsewhere).

    python -m bench.rollout_models degraded purchase_gbm:VERSION   # prints the new tag (BENTOML_HOME: the store)

- `copy`: the same pipeline again: a candidate that is neither better nor worse.
- `degraded`: the same pipeline, but every other row of a batch gets its neighbour's probability: the predicted
  probabilities keep their distribution exactly (no drift to see), while their ranking gets much worse (ROC AUC
  about 0.87 -> 0.68 on the purchase data). A single row is scored as is, so its warm-up passes.
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
    elif kind == "raising":
        warm_up = original.reference()[list(original.input_schema["columns"])].head(1)
        estimator = Raising(estimator, build_features(original.task, warm_up))
    elif kind != "copy":
        raise ValueError(f"unknown kind {kind!r}")
    metadata = {k: v for k, v in original.metadata.items() if k not in ("has_bound_dataset", "versions")}
    return save_model(original.name, estimator, labels={**original.labels, "stage": "archived", "test_kind": kind},
                      metadata=metadata, reference=original.reference(), bound=original.bound)


if __name__ == "__main__":
    # Through the module's own name, so the pickled classes are bench.rollout_models', not __main__'s.
    from bench.rollout_models import make as make_version

    print(make_version(sys.argv[1], sys.argv[2]))
