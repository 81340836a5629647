"""How a stored model sees its raw inputs, as the explainer needs it (training/explain/shapley.py `Features`): its
features (training/features.py), the raw inputs each is made from, and, when the pipeline's first step encodes
each feature column on its own, that encoding and the feature each encoded column comes from.

With the encoding known, each distinct value of a feature is encoded once per chunk of records and the hybrid rows
are assembled already encoded, so the encoder never runs on the millions of hybrid rows: a third of
purchase_lr's time and a tenth of purchase_gbm's (bench/bench_explain_cpu.py). A pipeline of any other shape is
explained through its whole `predict_proba`, exactly as well, only slower.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MaxAbsScaler, MinMaxScaler, OneHotEncoder, OrdinalEncoder, RobustScaler, StandardScaler

from training.explain.shapley import Features
from training.features import INPUTS, build_features
from training.store import StoredModel

# One output column per input column, computed from that column alone.
ONE_TO_ONE = (OrdinalEncoder, StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)


def _widths(transformer: Any, count: int) -> list[int] | None:
    """How many output columns each of a transformer's `count` input columns makes, when each is made from its own
    column alone; None when that is not known."""
    identity = isinstance(transformer, FunctionTransformer) and transformer.func is None  # a fitted passthrough
    if transformer == "passthrough" or identity or isinstance(transformer, ONE_TO_ONE):
        return [1] * count
    if (isinstance(transformer, OneHotEncoder) and transformer.drop_idx_ is None
            and transformer.max_categories is None and transformer.min_frequency is None):
        return [len(categories) for categories in transformer.categories_]
    return None


def encoded_from(encoder: Any, features: list[str]) -> tuple[str, ...] | None:
    """The feature each output column of a fitted ColumnTransformer is made from, when every one of its
    transformers maps each column on its own; None otherwise."""
    if not isinstance(encoder, ColumnTransformer):
        return None
    sources: list[str | None] = [None] * max(where.stop for where in encoder.output_indices_.values())
    for name, transformer, columns in encoder.transformers_:
        where = encoder.output_indices_[name]
        if where.stop == where.start:
            continue
        if not isinstance(columns, (list, tuple, np.ndarray)):
            return None
        names = [features[c] if isinstance(c, (int, np.integer)) else c for c in columns]  # the remainder: positions
        widths = _widths(transformer, len(names))
        if widths is None or sum(widths) != where.stop - where.start:
            return None
        sources[where] = list(np.repeat(names, widths))
    return tuple(sources) if all(source is not None for source in sources) else None  # type: ignore[arg-type]


def model_features(model: StoredModel, background: pd.DataFrame) -> tuple[Features, Any]:
    """(the explainer's view of `model`'s inputs, the estimator its output is read from: the final step when the
    rows come encoded, else the whole pipeline)."""
    make = partial(build_features, model.task)
    plain = Features(make, INPUTS[model.task])
    pipeline = model.estimator
    if not (isinstance(pipeline, Pipeline) and len(pipeline.steps) == 2):
        return plain, pipeline
    encoder, final = pipeline.steps[0][1], pipeline.steps[1][1]
    sample = make(background.head(1))
    sources = encoded_from(encoder, list(sample.columns))
    if sources is None or sparse.issparse(encoder.transform(sample)):
        return plain, pipeline
    return replace(plain, encode=encoder.transform, encoded_from=sources), final
