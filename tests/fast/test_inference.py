"""The direct predict_proba (training/inference.py) answers exactly like the pipeline it replaces, and steps aside
for any pipeline it does not know or cannot match."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from training import inference
from training.data import generate_purchase
from training.features import build_features
from training.inference import Steps, direct_predict_proba


def frame(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"country": rng.choice(["a", "b", "c", "d"], rows), "x": rng.normal(size=rows),
                         "y": rng.integers(0, 5, rows).astype(np.float64)})
    return data, ((data["x"] > 0) ^ (data["country"] == "b")).to_numpy().astype(int)


def boosted(handle_unknown: str = "use_encoded_value") -> Pipeline:
    encoder = (OrdinalEncoder(handle_unknown=handle_unknown, unknown_value=np.nan) if handle_unknown != "error"
               else OrdinalEncoder())
    encode = ColumnTransformer([("categorical", encoder, ["country"])], remainder="passthrough",
                               verbose_feature_names_out=False)
    data, y = frame(400, 0)
    model = HistGradientBoostingClassifier(max_iter=20, categorical_features=[0], random_state=0)
    return Pipeline([("encode", encode), ("model", model)]).fit(data, y)


def boosted_and_direct() -> tuple[Pipeline, Steps]:
    """The boosted pipeline and its direct path, checked on a sample as a model's load checks it."""
    pipeline = boosted()
    sample, _ = frame(200, 1)
    direct = direct_predict_proba(pipeline, sample)
    assert direct is not None
    return pipeline, direct


@pytest.mark.parametrize("rows", [inference.SMALL_LOOKUP, inference.SMALL_LOOKUP + 1, 1_000])
def test_the_direct_path_answers_bit_for_bit_like_the_pipeline_unseen_and_missing_categories_included(rows):
    """Either side of SMALL_LOOKUP: the categories' codes come from a dict up to it and from pandas past it."""
    pipeline, direct = boosted_and_direct()
    new, _ = frame(rows, 2)
    new.loc[::7, "country"] = "never seen"
    new.loc[3::11, "country"] = None
    assert np.array_equal(direct(new), pipeline.predict_proba(new))
    assert np.array_equal(direct(new.iloc[:1]), pipeline.predict_proba(new.iloc[:1]))
    assert np.array_equal(direct(new.iloc[3:4]), pipeline.predict_proba(new.iloc[3:4]))  # missing


def test_slices_of_the_prepared_rows_score_like_the_whole():
    """A big call prepares once and scores row slices on several threads (serving/core/threads.py)."""
    pipeline, direct = boosted_and_direct()
    new, _ = frame(1_001, 3)
    prepared = direct.prepare(new)
    sliced = np.concatenate([direct.score(prepared[:334]), direct.score(prepared[334:700]),
                             direct.score(prepared[700:])])
    assert np.array_equal(sliced, pipeline.predict_proba(new))


def test_the_compiled_walk_adds_the_trees_like_scikit_learn_missing_values_and_unknown_categories_included():
    """training/trees.py against the estimator's own raw predictions: several classes (a tree per class and
    iteration), categorical splits, NaN in numeric and categorical columns, categories never fitted, negative codes;
    and the estimator's own preprocessing, looked up, against its transformer."""
    from training.trees import Forest

    rng = np.random.default_rng(4)
    rows = 3_000
    X = np.column_stack([rng.integers(0, 12, rows).astype(np.float64), rng.normal(size=rows), rng.normal(size=rows)])
    y = (X[:, 0] % 3 + (X[:, 1] > 0)).astype(int)
    X[rng.random(rows) < 0.05, 1] = np.nan
    X[rng.random(rows) < 0.05, 0] = np.nan
    model = HistGradientBoostingClassifier(max_iter=15, categorical_features=[0], random_state=0).fit(X, y)
    assert model.n_trees_per_iteration_ == 4
    new = np.column_stack([rng.integers(-2, 20, 500).astype(np.float64), rng.normal(size=500), rng.normal(size=500)])
    new[::11, 0], new[::13, 2] = np.nan, np.nan
    prepared = model._preprocessor.transform(new)
    assert np.array_equal(inference._estimator_inputs(model._preprocessor)(new), prepared, equal_nan=True)
    assert np.array_equal(Forest.of(model).raw_predict(prepared), model._raw_predict(new))
    # Codes the preprocessor never hands on (it makes unseen categories NaN), as scikit-learn's walk treats them.
    codes = prepared.copy()
    codes[::3, 0] = rng.choice([-1.0, 12.0, 15.0, 200.0], len(codes[::3]))
    expected = np.zeros((len(codes), 4)) + model._baseline_prediction
    model._predict_iterations(codes, model._predictors, expected, False, 1)
    assert np.array_equal(Forest.of(model).raw_predict(codes), expected)


def test_pipelines_it_does_not_know_are_called_as_they_are():
    sample, y = frame(200, 1)
    scaled = Pipeline([("encode", ColumnTransformer([("categorical", OneHotEncoder(handle_unknown="ignore"), ["country"]),
                                                     ("numeric", StandardScaler(), ["x", "y"])])),
                       ("model", LogisticRegression())]).fit(sample, y)
    assert direct_predict_proba(scaled, sample) is None
    assert direct_predict_proba(boosted("error"), sample) is None  # the pipeline raises on an unknown category
    assert direct_predict_proba(HistGradientBoostingClassifier(max_iter=5).fit(sample[["x", "y"]], y), sample) is None


def test_a_direct_path_that_answers_otherwise_is_not_used(monkeypatch):
    pipeline = boosted()
    sample, _ = frame(200, 1)
    wrong = [lambda f: f[["x"]].to_numpy(), lambda f: f[["x", "y"]].to_numpy()]  # the country's codes replaced
    monkeypatch.setattr(inference, "_blocks", lambda transformer: wrong)
    assert direct_predict_proba(pipeline, sample) is None


@pytest.mark.usefixtures("trained_store")
def test_the_stored_boosted_model_scores_through_the_direct_path():
    from training.store import load_model

    model = load_model("purchase_gbm")
    assert model.direct is not None
    raw = generate_purchase(2_000, seed=5).drop(columns="purchased")
    raw.loc[::9, "student_country"] = "Atlantis"
    features = build_features(model.task, raw)
    expected = model.estimator.predict_proba(features)[:, 1]
    assert np.array_equal(model.predict_proba(raw), expected)
    assert np.array_equal(model.predict_proba(raw.iloc[:16]), expected[:16])  # /predict's batch size: dict lookups
    prepared = model.prepare(raw)
    assert isinstance(prepared, np.ndarray), "the trees' own inputs: encoded and binned once"
    assert np.array_equal(np.concatenate([model.score(prepared[:777]), model.score(prepared[777:])]), expected)
