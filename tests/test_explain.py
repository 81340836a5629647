"""Explanations of the stored models (training/explain): additivity, direction, agreement with shap, and the
Shapley arithmetic itself against the definition. The doors are in tests/test_explain_server.py (a real server)
and tests/fast/test_explain_fast.py (in process)."""

from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from training.explain.explainer import Explainer, background_sample
from training.explain.shapley import coalitions, shapley_values
from training.store import load_model
from training.train import INCREASING

MODELS = ["purchase_gbm", "purchase_lr", "drive_stats_a", "drive_stats_b"]


@pytest.fixture(scope="module")
def explainers(trained_store):
    return {name: Explainer(load_model(name)) for name in MODELS}


def rows_of(explainer: Explainer, count: int) -> pd.DataFrame:
    return explainer.model.reference()[explainer.inputs].tail(count).reset_index(drop=True)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("output", ["probability", "log_odds"])
def test_contributions_add_up_to_the_model_output(explainers, name, output):
    explainer = explainers[name]
    records = rows_of(explainer, 12)
    with threadpool_limits(1, user_api="openmp"):
        explanation = explainer.explain(records, output)
    assert explanation.inputs == list(explainer.model.input_schema["columns"]), "the raw inputs, not encoded columns"
    assert explanation.contributions.shape == (12, len(explanation.inputs))
    total = explanation.base_value + explanation.contributions.sum(axis=1)
    assert np.abs(total - explanation.values).max() < 1e-6
    # `values` is the model's own output on the record, in the stated space.
    proba = explainer.model.predict_proba(records)
    if output == "probability":
        assert np.abs(explanation.values - proba).max() < 1e-12
    else:
        assert np.abs(1 / (1 + np.exp(-explanation.values)) - proba).max() < 1e-9
    # The base value is the mean output on the background: the same for every record.
    expected_base = explainer._outputs[output](explainer.background).mean()
    assert explanation.base_value == pytest.approx(expected_base, abs=1e-12)


def test_more_minutes_watched_never_lowers_its_contribution(explainers):
    """purchase_gbm is held increasing in both features made from minutes_watched (training/train.py), so the
    Shapley value of minutes_watched, an average of increasing differences, never decreases as it grows."""
    assert {"log_minutes_watched", "log_minutes_per_day"} == set(INCREASING["purchase"])
    explainer = explainers["purchase_gbm"]
    column = explainer.inputs.index("minutes_watched")
    grid = np.array([0.0, 5, 20, 60, 120, 250, 500, 1_000, 2_000, 5_000, 20_000])
    students = rows_of(explainer, 6)
    for _, student in students.iterrows():
        records = pd.DataFrame([student] * len(grid)).reset_index(drop=True)
        records["minutes_watched"] = grid
        records = records.astype(students.dtypes.to_dict())
        for output in ("probability", "log_odds"):
            contributions = explainer.explain(records, output).contributions[:, column]
            steps = np.diff(contributions)
            assert (steps >= -1e-12).all(), (output, student.to_dict(), contributions)
        assert contributions[-1] > contributions[0], "it also moves: the test can fail"


def brute_force(output, record: pd.DataFrame, background: pd.DataFrame) -> np.ndarray:
    """The textbook formula, one coalition at a time (no shared rows, no matrix)."""
    k = record.shape[1]
    columns = list(record.columns)

    def value(coalition: tuple[int, ...]) -> float:
        hybrid = background.copy()
        for i in coalition:
            hybrid[columns[i]] = record.iloc[0, i]
        return float(np.mean(output(hybrid)))

    phi = np.zeros(k)
    for i in range(k):
        others = [j for j in range(k) if j != i]
        for size in range(k):
            for subset in combinations(others, size):
                weight = factorial(size) * factorial(k - size - 1) / factorial(k)
                phi[i] += weight * (value(tuple(sorted((*subset, i)))) - value(subset))
    return phi


def test_the_enumeration_matches_the_shapley_formula_with_shared_values():
    """A function with interactions, and background rows that share values with the record (the rows the
    enumeration scores once and reuses)."""
    def output(frame: pd.DataFrame) -> np.ndarray:
        a, b, c = (frame[x].to_numpy(dtype=float) for x in "abc")
        bonus = (frame["d"].to_numpy() == "x").astype(float)
        return a * b + np.sin(c) * bonus + a**2 - 3 * c * bonus

    record = pd.DataFrame({"a": [1.0], "b": [2], "c": [0.5], "d": ["x"]})
    background = pd.DataFrame({"a": [1.0, 0.0, 3.0, 1.0], "b": [2, 5, 2, 0], "c": [0.5, 0.5, -1.0, 2.0],
                               "d": ["x", "y", "x", "y"]})
    phi, values = shapley_values(output, record, background, chunk_positions=1)  # chunks of one record
    assert np.allclose(phi[0], brute_force(output, record, background), atol=1e-12)
    assert values[0, 0] == pytest.approx(output(background).mean()) and values[0, -1] == pytest.approx(output(record)[0])
    assert coalitions(4).shape == (16, 4) and not coalitions(4)[0].any() and coalitions(4)[-1].all()
    many = pd.concat([record, record.assign(a=4.0, d="y")], ignore_index=True)
    batched, _ = shapley_values(output, many, background)
    assert np.allclose(batched[0], phi[0]) and np.allclose(batched[1], brute_force(output, many.iloc[[1]], background))


def _made(frame: pd.DataFrame) -> pd.DataFrame:
    """Features of one, two and three inputs; two of them collapse different inputs to one value (a rate of 0
    whenever nothing was started, a sign)."""
    a, b, c = (frame[x].to_numpy(dtype=float) for x in "abc")
    return pd.DataFrame({
        "rate": np.divide(b, a, out=np.zeros_like(b), where=a > 0), "a": a, "sign": np.sign(c),
        "mix": a * b - c, "d": frame["d"].to_numpy(),
    })


MADE_FROM = {"rate": ("b", "a"), "a": ("a",), "sign": ("c",), "mix": ("a", "b", "c"), "d": ("d",)}


def _scored(made: pd.DataFrame) -> np.ndarray:
    bonus = (made["d"].to_numpy() == "x").astype(float)
    return np.tanh(made["rate"].to_numpy() * made["mix"].to_numpy()) + bonus * made["sign"].to_numpy() + made["a"].to_numpy() ** 2


def test_feature_by_feature_hybrids_match_the_shapley_formula():
    """The hybrid rows assembled from feature tables (a mix of a record's and a background row's inputs for the
    features made of several inputs), deduplicated across records and chunks, against the textbook formula on the
    raw inputs; and the encoded variant (each feature encoded on its own) against both."""
    from training.explain.shapley import Features

    records = pd.DataFrame({"a": [0, 2, 2, 3], "b": [0, 1, 1, 4], "c": [-1.5, 0.0, 2.0, 2.0], "d": ["x", "y", "x", "x"]})
    background = pd.DataFrame({"a": [0, 2, 5, 1, 2], "b": [0, 1, 3, 0, 2], "c": [2.0, -1.0, 0.0, 0.5, 2.0],
                               "d": ["y", "x", "x", "y", "x"]})
    features = Features(_made, MADE_FROM)

    def raw(frame: pd.DataFrame) -> np.ndarray:
        return _scored(_made(frame))

    ours, values = shapley_values(_scored, records, background, features)
    for i in range(len(records)):
        assert np.allclose(ours[i], brute_force(raw, records.iloc[[i]], background), atol=1e-12), i
    assert np.allclose(values[:, -1], raw(records)) and np.allclose(values[:, 0], raw(background).mean())
    one_at_a_time, _ = shapley_values(_scored, records, background, features, chunk_positions=1)
    assert np.abs(one_at_a_time - ours).max() < 1e-12

    columns = list(MADE_FROM)
    encoded_from = ("rate", "a", "sign", "mix", "d", "d")  # d: one-hot, two columns

    def encode(made: pd.DataFrame) -> np.ndarray:
        numbers = made[columns[:4]].to_numpy(dtype=float) * 2.0 - 1.0
        return np.column_stack([numbers, made["d"].to_numpy() == "x", made["d"].to_numpy() == "y"]).astype(float)

    def score_encoded(matrix: np.ndarray) -> np.ndarray:
        decoded = pd.DataFrame((matrix[:, :4] + 1.0) / 2.0, columns=columns[:4])
        decoded["d"] = np.where(matrix[:, 4] == 1.0, "x", "y")
        return _scored(decoded)

    encoded = Features(_made, MADE_FROM, encode, encoded_from)
    assert np.abs(shapley_values(score_encoded, records, background, encoded)[0] - ours).max() < 1e-12


def test_agrees_with_shaps_exact_explainer_on_a_fixture(explainers):
    """shap's own exact explainer, with an independent masker over the same background, plays the same game: the
    values must agree to rounding. The country goes to shap as an integer code (its maskers take numbers)."""
    import shap  # the dev extra: `make install` brings it

    explainer = explainers["purchase_gbm"]
    records = rows_of(explainer, 5)
    background = explainer.background
    countries = sorted(set(background["student_country"]) | set(records["student_country"]))
    dtypes = background.dtypes.to_dict()

    def to_numbers(frame: pd.DataFrame) -> np.ndarray:
        out = frame.copy()
        out["student_country"] = out["student_country"].map(countries.index)
        return out.to_numpy(dtype=np.float64)

    def model(matrix: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(matrix, columns=explainer.inputs)
        frame["student_country"] = [countries[int(code)] for code in frame["student_country"]]
        return explainer._outputs["log_odds"](frame.astype(dtypes))

    masker = shap.maskers.Independent(to_numbers(background), max_samples=len(background))
    theirs = shap.explainers.Exact(model, masker)(to_numbers(records))
    ours = explainer.explain(records, "log_odds")
    assert np.abs(theirs.values - ours.contributions).max() < 1e-9
    assert np.abs(np.asarray(theirs.base_values) - ours.base_value).max() < 1e-9


def test_the_background_spans_the_models_answers(explainers):
    model = explainers["purchase_gbm"].model
    reference = model.reference()
    background = background_sample(reference, explainers["purchase_gbm"].inputs, 100)
    assert len(background) == 100 and list(background.columns) == explainers["purchase_gbm"].inputs
    predictions = model.predict_proba(background)
    assert predictions.min() == pytest.approx(reference["prediction"].min())
    assert predictions.max() == pytest.approx(reference["prediction"].max())
    again = background_sample(reference, explainers["purchase_gbm"].inputs, 100)
    assert again.equals(background), "the same background every time: an audit months later gets the same answer"
    assert "evenly spaced quantiles" in explainers["purchase_gbm"].explain(reference.head(1)).method
    drawn = Explainer(model, background_rows=30, how="random")
    assert "drawn at random (seed 0)" in drawn.explain(reference.head(1)).method and len(drawn.background) == 30
    seeded = background_sample(reference.drop(columns="prediction"), explainers["purchase_gbm"].inputs, 100)
    assert len(seeded) == 100 and seeded.equals(background_sample(reference.drop(columns="prediction"),
                                                                  explainers["purchase_gbm"].inputs, 100))


@pytest.mark.parametrize("name", MODELS)
def test_encoded_rows_give_the_whole_pipelines_values(explainers, name):
    """Every served pipeline encodes each feature on its own, so its rows are assembled already encoded
    (training/explain/encoding.py); the values are those of the whole pipeline on feature rows, to rounding."""
    from training.explain.explainer import model_score
    from training.explain.shapley import Features

    explainer = explainers[name]
    assert explainer.features.encode is not None and len(explainer.features.encoded_from) > 0
    records = rows_of(explainer, 6)
    plain = Features(explainer.features.make, explainer.features.inputs)
    with threadpool_limits(1, user_api="openmp"):
        for output in ("probability", "log_odds"):
            whole, _ = shapley_values(model_score(explainer.model, output), records, explainer.background, plain)
            assert np.abs(explainer.explain(records, output).contributions - whole).max() < 1e-12


def test_an_encoder_that_mixes_columns_is_not_assembled():
    """A transformer whose output columns are not each made of one column (PCA) leaves the rows to the whole
    pipeline; so does one the module does not know."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler

    from training.explain.encoding import encoded_from

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 2.0], "c": ["x", "y", "x", "z"]})
    known = ColumnTransformer([("one_hot", OneHotEncoder(), ["c"]), ("scaled", StandardScaler(), ["a", "b"])]).fit(frame)
    assert encoded_from(known, list(frame.columns)) == ("c", "c", "c", "a", "b")
    passthrough = ColumnTransformer([("one_hot", OneHotEncoder(drop="first"), ["c"])], remainder="passthrough").fit(frame)
    assert encoded_from(passthrough, list(frame.columns)) is None, "a dropped category: widths unknown"
    for mixing in (PCA(1), PolynomialFeatures(2)):
        encoder = ColumnTransformer([("mixing", mixing, ["a", "b"])], remainder="drop").fit(frame)
        assert encoded_from(encoder, list(frame.columns)) is None


def test_the_cpu_bench_runs_as_typed_and_matches_its_baseline(trained_store, tmp_path):
    """`python -m bench.bench_explain_cpu` (the before/after in docs/explanations.md) runs as typed: this checkout
    and its baseline revision (the design before the feature tables) give the same contributions to the bit."""
    import json

    from tests.conftest import ROOT, run_cli

    run_cli("-m", "bench.bench_explain_cpu", "--models", "purchase_lr", "--records", "30", "--single", "2",
            "--reps", "1", "--rounds", "1", "--out", str(tmp_path))
    measured = json.loads((tmp_path / "explain_cpu.json").read_text())["models"]["purchase_lr"]
    assert measured["max_difference"] == 0.0
    assert all(measured[side]["big_call_cpu_s"] > 0 for side in ("461aaa6", "this checkout"))
    assert not (ROOT / ".npy").exists()


def test_the_cpu_benchs_worker_refuses_an_empty_save_path(tmp_path):
    """np.save("") writes a file named ".npy" in the working folder: the worker refuses the path instead."""
    from tests.conftest import ROOT, run_cli

    refused = run_cli("-m", "bench.bench_explain_cpu", "--worker", "purchase_lr", "--save", "", check=False)
    assert refused.returncode == 2 and "--save" in refused.stderr
    assert not (ROOT / ".npy").exists()


def test_the_lookup_bench_runs_as_typed(tmp_path):
    """`python -m bench.bench_lookup` (the by-id figures in docs/explanations.md) writes a log with the service's
    writer, compacted segments and a stream segment both, and finds every id it wrote there (it checks itself)."""
    import json

    from tests.conftest import run_cli

    run_cli("-m", "bench.bench_lookup", "--rows", "40000", "--segment-mb", "0.5", "--out", str(tmp_path))
    [measured] = json.loads((tmp_path / "lookup.json").read_text())
    assert measured["files"] >= 2 and measured["rows"] == 40_000
    assert [measured[name]["found"] for name in ("oldest", "middle", "newest", "unknown")] == [True, True, True, False]


def test_the_explanation_bench_runs_as_typed(trained_store, tmp_path):
    """`python -m bench.bench_explain` (the latency and /predict-cost figures) on a real server, shortened."""
    import json

    from tests.conftest import run_cli

    run_cli("-m", "bench.bench_explain", "--nice", "19", "--single", "3", "--big", "20", "--big-reps", "1",
            "--seconds", "1", "--rounds", "1", "--concurrency", "4", "--out", str(tmp_path))
    measured = json.loads((tmp_path / "explain.json").read_text())
    assert measured["one_record"]["p50_ms"] > 0 and measured["big_call"]["median_s"] > 0
    rows = measured["predict_cost"]["rows"]
    assert len(rows) == 3 and all(row["throughput"] > 0 and row["errors"] == 0 for row in rows)
