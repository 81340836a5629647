"""A fitted pipeline's `predict_proba` without scikit-learn's per-call machinery, where that gives the same answers.

`Pipeline([("encode", ColumnTransformer(...)), ("model", estimator)]).predict_proba` pays on every call for generic
machinery: the pipeline's parameter routing, the column transformer's joblib dispatch (with `n_jobs=None` too) and
output checks, and OrdinalEncoder's input validation. For `purchase_gbm` that is about 1.3 ms CPU of a single
record's 3.1 ms and 2 ms of 10,000 rows' 35 ms (docs/performance.md). `direct_predict_proba` builds a function doing
the same arithmetic straight away: passthrough columns as they are, ordinal codes looked up in the encoder's fitted
categories, then the final estimator's own `predict_proba`.

It knows only that shape (passthrough columns and OrdinalEncoders with unknown categories encoded as a value), and
it is used only when it answers bit for bit like the pipeline on a sample (the model's reference sample, with an
unseen category added): anything else gets None, and the pipeline is called as it is.

It runs in two steps (`Steps`): `prepare` the whole frame once (pandas and the encoders, which hold the GIL), then
`score` row slices of the result (the trees, which release it while they walk). A big call scores its slices on
several threads at once (serving/core/threads.py), and only the trees run in them: preparing each slice apart cost
every slice the fixed work again, and the slices waited for each other's GIL (docs/performance.md). For a
HistGradientBoosting model the trees are walked by one compiled loop (training/trees.py) over the estimator's
fitted nodes, then its loss's link; those are private attributes of scikit-learn (pinned in pyproject.toml), which
is why the path is checked on the sample at every load.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder
from sklearn.utils.validation import check_array
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)
UNSEEN = "\x00unseen category"  # added to the check sample so the unknown-category path is compared too

Block = Callable[[pd.DataFrame], np.ndarray]


def _passthrough(columns: list[str]) -> Block:
    # Column by column: `frame[columns]` builds a new frame first, 112 us of a 16-row batch's 131.
    return lambda frame: np.column_stack([frame[c].to_numpy(dtype=np.float64) for c in columns])


def _plain(encoder: OrdinalEncoder) -> bool:
    """Unknown categories encoded as a value, and no infrequent categories grouped: codes are a lookup."""
    return encoder.handle_unknown == "use_encoded_value" and not getattr(encoder, "infrequent_categories_", None)


# Up to this many values a dict finds the codes: pandas' `get_indexer` costs ~20 us whatever the size (1.3 us with
# the dict for 16 values), and from about 1,000 values on it is the faster (in process, 2026-12-04).
SMALL_LOOKUP = 256


class Categories:
    """One column's fitted categories, as a lookup of their positions."""

    def __init__(self, categories: Any):
        self.index = pd.Index(categories)
        self.positions = {category: position for position, category in enumerate(self.index)}

    def codes(self, values: np.ndarray, unknown: float, missing: float) -> np.ndarray:
        """An OrdinalEncoder's codes for one column: the position in its fitted categories, else unknown or
        missing."""
        if len(values) <= SMALL_LOOKUP:
            codes = np.fromiter(map(self.positions.get, values, itertools.repeat(-1)), np.float64, len(values))
        else:
            codes = self.index.get_indexer(values).astype(np.float64)
        codes[codes < 0] = unknown
        codes[pd.isna(values)] = missing
        return codes


def _ordinal(encoder: OrdinalEncoder, columns: list[str]) -> Block | None:
    if not _plain(encoder):
        return None
    indexes = []
    for categories in encoder.categories_:
        if pd.isna(categories).any():
            return None  # missing values as a category: the encoder's own rules
        indexes.append(Categories(categories))
    unknown, missing = float(encoder.unknown_value), float(encoder.encoded_missing_value)

    def encode(frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(columns)), dtype=np.float64)
        for i, (column, index) in enumerate(zip(columns, indexes)):
            out[:, i] = index.codes(frame[column].to_numpy(), unknown, missing)
        return out

    return encode


def _blocks(transformer: ColumnTransformer) -> list[Block] | None:
    blocks = []
    for _, fitted, columns in transformer.transformers_:
        if isinstance(fitted, str) and fitted == "drop":
            continue
        columns = list(columns)
        if not all(isinstance(c, str) for c in columns):
            return None
        if (isinstance(fitted, str) and fitted == "passthrough") or (
                isinstance(fitted, FunctionTransformer) and fitted.func is None):
            blocks.append(_passthrough(columns))
        elif isinstance(fitted, OrdinalEncoder):
            block = _ordinal(fitted, columns)
            if block is None:
                return None
            blocks.append(block)
        else:
            return None
    return blocks


@dataclass(frozen=True)
class Steps:
    """`predict_proba` as `score(prepare(features))`; `score` takes any row slice of what `prepare` returned."""

    prepare: Callable[[pd.DataFrame], np.ndarray]
    score: Callable[[np.ndarray], np.ndarray]

    def __call__(self, features: pd.DataFrame) -> np.ndarray:
        return self.score(self.prepare(features))


def _trees(final: Any) -> Steps | None:
    """A HistGradientBoostingClassifier's own preprocessing (looked up, `_estimator_inputs`), then its trees in one
    compiled walk (training/trees.py) on the calling thread: a call's threads are its row slices."""
    needed = ("_preprocessor", "_predictors", "_baseline_prediction", "_bin_mapper", "_loss")
    if not isinstance(final, HistGradientBoostingClassifier) or not all(hasattr(final, a) for a in needed):
        return None
    try:
        from training.trees import Forest  # numba loads only with a model that walks it

        forest = Forest.of(final)
    except Exception as exc:  # noqa: BLE001 - no compiled walk (numba cannot compile here, nodes laid out otherwise)
        logger.info("compiled walk not used: %s", exc)
        return None
    prepare = _estimator_inputs(final._preprocessor) or final._preprocessor.transform

    def score(rows: np.ndarray) -> np.ndarray:
        return final._loss.predict_proba(forest.raw_predict(rows))

    return Steps(prepare, score)


def _estimator_inputs(preprocessor: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A HistGradientBoosting model's own preprocessor (an OrdinalEncoder of its categorical columns, the others as
    floats, in a ColumnTransformer) as a lookup per column, without the transformer's dispatch and checks; None for
    any other shape (the preprocessor is then called as it is). `prepare` of 10,000 rows of `purchase_gbm`: 4.1 ms
    of CPU through the transformer, 1.9 ms looked up (2026-12-04 17:47, in process, `time.thread_time`)."""
    if preprocessor is None:
        return lambda encoded: encoded
    if not isinstance(preprocessor, ColumnTransformer):
        return None
    steps: list[tuple[np.ndarray, list[Categories] | None]] = []  # in output order: input columns, categories or None
    for _, fitted, mask in preprocessor.transformers_:
        columns = np.flatnonzero(np.asarray(mask, dtype=bool)) if len(mask) else np.empty(0, dtype=int)
        if isinstance(fitted, str) and fitted == "drop":
            continue
        if isinstance(fitted, OrdinalEncoder):
            if not _plain(fitted) or not np.isnan(fitted.unknown_value) or not np.isnan(fitted.encoded_missing_value):
                return None
            indexes = []
            for categories in fitted.categories_:
                missing = pd.isna(categories)
                if missing[:-1].any():
                    return None
                # A missing value seen in fitting is the last category, and it is encoded as missing (NaN) anyway.
                indexes.append(Categories(categories[:-1] if missing[-1:].any() else categories))
            steps.append((columns, indexes))
        elif isinstance(fitted, FunctionTransformer) and getattr(fitted.func, "func", None) is check_array:
            steps.append((columns, None))
        else:
            return None
    width = sum(len(columns) for columns, _ in steps)

    def transform(encoded: np.ndarray) -> np.ndarray:
        out = np.empty((len(encoded), width), dtype=np.float64, order="F")  # the walk reads a column at a time
        at = 0
        for columns, indexes in steps:
            for j, column in enumerate(columns):
                if indexes is None:
                    out[:, at] = encoded[:, column]
                else:  # unknown and missing values are both NaN (checked above)
                    out[:, at] = indexes[j].codes(encoded[:, column], np.nan, np.nan)
                at += 1
        return out

    return transform


def direct_predict_proba(pipeline: object, sample: pd.DataFrame) -> Steps | None:
    """`pipeline.predict_proba` without its machinery, checked on `sample` (feature frames), or None."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    transformer, final = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(transformer, ColumnTransformer) or not hasattr(final, "predict_proba"):
        return None
    blocks = _blocks(transformer)
    if blocks is None:
        return None
    trees = _trees(final)

    def encode(features: pd.DataFrame) -> np.ndarray:
        return np.hstack([block(features) for block in blocks])

    if trees is not None:
        predict_proba = Steps(lambda features: trees.prepare(encode(features)), trees.score)
    else:  # the final estimator as it is: its OpenMP threads, if any, are the calling thread's setting
        predict_proba = Steps(encode, final.predict_proba)

    check = sample.copy()
    categorical = [c for c in check.columns if check[c].dtype == object]
    unseen = check.iloc[:1].copy()
    unseen[categorical] = UNSEEN
    check = pd.concat([check, unseen], ignore_index=True)
    try:
        with threadpool_limits(1, user_api="openmp"):  # a load-time check: no team of spinning threads for it
            same = np.array_equal(predict_proba(check), pipeline.predict_proba(check))
    except Exception as exc:  # noqa: BLE001 - any doubt: the pipeline as it is
        logger.info("direct predict_proba not used: %s", exc)
        return None
    return predict_proba if same else None
