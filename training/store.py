"""The BentoML model store as this project uses it: one directory per model version holding the fitted pipeline,
the reference sample for drift detection and, for fleet models, the bound dataset; metadata holds the metrics
and the input schema. A tag alone leads to all of it.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import bentoml
import joblib
import numpy as np
import pandas as pd
import sklearn

import settings  # noqa: F401  (sets the do-not-track variables before bentoml is used)
from training.calibration import Calibrator
from training.features import build_features
from training.inference import Steps, direct_predict_proba

MODEL_FILE = "model.joblib"
REFERENCE_FILE = "reference.parquet"
BOUND_FILE = "bound.parquet"
HOLDOUT_FILE = "holdout.parquet"  # the held-out split's probabilities and labels (training/calibration.py)
CALIBRATOR_FILE = "calibrator.json"
PREDICTION = "prediction"  # the reference sample's column of predicted probabilities
CHECK_ROWS = 1_000  # reference rows on which a direct predict_proba must answer like the pipeline


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
    holdout: pd.DataFrame | None = None,
    calibrator: Calibrator | None = None,
) -> str:
    """Save a fitted pipeline with its reference sample (and bound dataset, held-out sample, calibrator); returns
    the new tag."""
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
        if holdout is not None:
            holdout.to_parquet(model.path_of(HOLDOUT_FILE), index=False)
        if calibrator is not None:
            with open(model.path_of(CALIBRATOR_FILE), "w") as handle:
                handle.write(calibrator.to_json())
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
    # The estimator's predict_proba without scikit-learn's per-call machinery, when it answers alike (training/inference.py).
    direct: Steps | None = field(default=None, repr=False)

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
        return self.score(self.prepare(raw))

    def prepare(self, raw: pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """Validated raw inputs as the model's input, for `score` to take in row slices (an array on the direct path,
        else the features frame)."""
        features = build_features(self.task, raw)
        return self.direct.prepare(features) if self.direct is not None else features

    def score(self, rows: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Probability of the positive class for rows of `prepare`'s result, on the calling thread (the estimator's
        own path with the thread's OpenMP setting)."""
        if self.direct is not None:
            return self.direct.score(rows)[:, 1]
        return self.estimator.predict_proba(rows)[:, 1]

    def classify(self, proba: np.ndarray) -> np.ndarray:
        return (proba >= self.threshold).astype(np.int64)

    def reference(self) -> pd.DataFrame:
        return pd.read_parquet(f"{self.path}/{REFERENCE_FILE}")

    def holdout(self) -> pd.DataFrame | None:
        """The held-out split's `probability` and `label` (None for models trained before it was stored)."""
        path = f"{self.path}/{HOLDOUT_FILE}"
        return pd.read_parquet(path) if os.path.exists(path) else None

    def calibrator(self) -> Calibrator | None:
        """The calibrator chosen at training (method `none` when none was needed); None when the model predates
        the check."""
        return read_calibrator(self.path)

    @cached_property
    def bound(self) -> pd.DataFrame | None:
        if not self.metadata.get("has_bound_dataset"):
            return None
        return pd.read_parquet(f"{self.path}/{BOUND_FILE}")


def read_calibrator(model_path: str) -> Calibrator | None:
    path = f"{model_path}/{CALIBRATOR_FILE}"
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return Calibrator.from_json(handle.read())


def load_model(tag: str, *, estimator: bool = True) -> StoredModel:
    """Load one model version by tag (`name`, `name:latest` or `name:version`) from the configured store; without
    its fitted pipeline (`estimator=False`) for jobs that read only its metadata and reference sample."""
    model = bentoml.models.get(tag)
    stored = StoredModel(
        name=model.tag.name,
        version=str(model.tag.version),
        labels=dict(model.info.labels),
        metadata=dict(model.info.metadata),
        path=model.path,
        estimator=joblib.load(model.path_of(MODEL_FILE)) if estimator else None,
    )
    if estimator:
        stored.direct = _direct(stored)
    return stored


def _direct(model: StoredModel) -> Steps | None:
    """The direct predict_proba, checked on the model's reference sample (None without one)."""
    try:
        sample = model.reference()[list(model.input_schema["columns"])].iloc[:CHECK_ROWS]
    except (OSError, KeyError):
        return None
    return direct_predict_proba(model.estimator, build_features(model.task, sample))


def has_model(name: str) -> bool:
    try:
        bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        return False
    return True


# --- References: `name`, `name:version`, or the stage alias `task@stage` --------------------------------------
# One parser for every place that takes a model reference (settings, serving, promotion, scoring), so they agree.
_ALIAS = re.compile(r"^(?P<task>[A-Za-z0-9_][A-Za-z0-9_.\-]*)@(?P<stage>[A-Za-z0-9_][A-Za-z0-9_\-]*)$")
_TAG = re.compile(r"^(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)(?::(?P<version>[A-Za-z0-9_.\-]+))?$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: a stage alias (`task`, `stage`) or a tag (`name`, `version`)."""

    text: str
    name: str | None = None
    version: str | None = None
    task: str | None = None
    stage: str | None = None

    @property
    def is_alias(self) -> bool:
        return self.stage is not None

    @property
    def served_name(self) -> str:
        """The name a client uses for it: the alias itself, or the model name of a tag."""
        return self.text if self.is_alias else str(self.name)


def parse_ref(text: str) -> ModelRef:
    """Parse `name`, `name:version` or `task@stage`; raises ValueError naming the reference otherwise."""
    text = text.strip()
    alias = _ALIAS.match(text)
    if alias:
        return ModelRef(text, task=alias["task"], stage=alias["stage"])
    tag = _TAG.match(text)
    if tag:
        return ModelRef(text, name=tag["name"], version=tag["version"])
    raise ValueError(f"{text!r} is not a model reference: use name, name:version or task@stage")


def resolve_ref(ref: str | ModelRef) -> str:
    """The concrete tag (`name:version`) a reference names now. An alias is looked up in the stage book kept with
    the store (training/stages.py); raises LookupError when no version holds that stage or the model is missing."""
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if ref.is_alias:
        from training.stages import holder  # the stage book imports this module

        tag = holder(str(ref.task), str(ref.stage))
        if tag is None:
            raise LookupError(f"no model of task {ref.task!r} holds stage {ref.stage!r} ({ref.text})")
        return tag
    try:
        return str(bentoml.models.get(ref.text).tag)
    except bentoml.exceptions.NotFound:
        raise LookupError(f"model {ref.text!r} is not in the model store") from None


def load_metadata(tag: str) -> tuple[str, dict[str, Any]]:
    """(concrete tag, metadata) of a stored version without loading its pipeline; LookupError when missing."""
    try:
        model = bentoml.models.get(tag)
    except (bentoml.exceptions.NotFound, ValueError):
        raise LookupError(f"model {tag!r} is not in the model store") from None
    return str(model.tag), dict(model.info.metadata)


def may_serve(reference: str, served: list[str]) -> bool:
    """Whether `reference` can be answered by the models `served` (references): by its own name, or through the
    store where aliases and names meet (an alias held by a served name, a name that holds a served alias). When
    the store cannot say yet (no holder, e.g. before the first training), the registry decides at run time."""
    ref = parse_ref(reference)
    refs = [parse_ref(text) for text in served]
    if ref.served_name in {r.served_name for r in refs}:
        return True
    others = [r for r in refs if r.is_alias != ref.is_alias]
    if not others:
        return False
    if ref.is_alias:
        try:
            return resolve_ref(ref).split(":", 1)[0] in {r.name for r in others}
        except LookupError:
            return True
    held = set()
    for alias in others:
        try:
            held.add(resolve_ref(alias).split(":", 1)[0])
        except LookupError:
            return True  # an alias nobody holds yet may come to name it
    return ref.name in held


def task_of(reference: str) -> str | None:
    """The task a reference serves: an alias's own, a tag's from its metadata; None when the store cannot say."""
    ref = parse_ref(reference)
    if ref.is_alias:
        return ref.task
    try:
        return load_metadata(ref.text)[1].get("task")
    except LookupError:
        return None
