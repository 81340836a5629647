"""The BentoML model store as this project uses it: one directory per model version holding the fitted pipeline,
the reference sample for drift detection and, for fleet models, the bound dataset; metadata holds the metrics
and the input schema. A tag alone leads to all of it.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import bentoml
import joblib
import numpy as np
import pandas as pd
import sklearn

import settings  # noqa: F401  (sets the do-not-track variables before bentoml is used)
from training.features import build_features

MODEL_FILE = "model.joblib"
REFERENCE_FILE = "reference.parquet"
BOUND_FILE = "bound.parquet"
PREDICTION = "prediction"  # the reference sample's column of predicted probabilities


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "bentoml": bentoml.__version__,
    }


def save_model(
    name: str,
    estimator: Any,
    *,
    labels: dict[str, str],
    metadata: dict[str, Any],
    reference: pd.DataFrame,
    bound: pd.DataFrame | None = None,
) -> str:
    """Save a fitted pipeline with its reference sample (and bound dataset); returns the new tag."""
    with bentoml.models.create(
        name,
        labels=labels,
        metadata={**metadata, "has_bound_dataset": bound is not None, "versions": library_versions()},
        module=__name__,
        context=bentoml.models.ModelContext(
            framework_name="sklearn", framework_versions={"scikit-learn": sklearn.__version__}
        ),
    ) as model:
        joblib.dump(estimator, model.path_of(MODEL_FILE))
        reference.to_parquet(model.path_of(REFERENCE_FILE), index=False)
        if bound is not None:
            bound.to_parquet(model.path_of(BOUND_FILE), index=False)
    return str(model.tag)


@dataclass
class StoredModel:
    """A model read back from the store: scores raw input frames through the shared features."""

    name: str
    version: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    path: str
    estimator: Any = field(repr=False)

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def task(self) -> str:
        return self.metadata["task"]

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.metadata["input_schema"]

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    def predict_proba(self, raw: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class for validated raw inputs."""
        if raw.empty:
            return np.empty(0)
        return self.estimator.predict_proba(build_features(self.task, raw))[:, 1]

    def classify(self, proba: np.ndarray) -> np.ndarray:
        return (proba >= self.threshold).astype(np.int64)

    def reference(self) -> pd.DataFrame:
        return pd.read_parquet(f"{self.path}/{REFERENCE_FILE}")

    @cached_property
    def bound(self) -> pd.DataFrame | None:
        if not self.metadata.get("has_bound_dataset"):
            return None
        return pd.read_parquet(f"{self.path}/{BOUND_FILE}")


def load_model(tag: str) -> StoredModel:
    """Load one model version by tag (`name`, `name:latest` or `name:version`) from the configured store."""
    model = bentoml.models.get(tag)
    return StoredModel(
        name=model.tag.name,
        version=str(model.tag.version),
        labels=dict(model.info.labels),
        metadata=dict(model.info.metadata),
        path=model.path,
        estimator=joblib.load(model.path_of(MODEL_FILE)),
    )


def has_model(name: str) -> bool:
    try:
        bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        return False
    return True
