"""Label-free quality estimates (issue 23): the vectorized CBPE against scikit-learn and against the outcomes it
predicts, the calibration check, the typed entry point, and the quality job on a window that drifts into a region
where the model is worse: the estimate must drop with the realized quality, before any outcome arrives."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from monitoring.outcomes import Outcome, OutcomeStore
from monitoring.predictlog import PredictionLog
from monitoring.quality.cbpe import METRICS, estimate_segments, realized_segments
from monitoring.quality.cli import main
from monitoring.quality.estimate import GroupEstimate, ModelCalibration, estimate_quality
from serving.core.ids import new_ids
from training.calibration import Calibrator, check_calibration, expected_calibration_error, fit_isotonic
from training.data import generate_purchase
from training.schema import PURCHASE
from training.store import load_model
from tests.logfiles import batch

SKLEARN = {"roc_auc": lambda y, p, d: roc_auc_score(y, p), "precision": lambda y, p, d: precision_score(y, d),
           "recall": lambda y, p, d: recall_score(y, d), "accuracy": lambda y, p, d: accuracy_score(y, d)}


def test_realized_metrics_are_scikit_learns_per_segment_with_ties():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 9, 60_000)  # unordered segments
    score = np.round(rng.random(codes.size), 2)  # many tied scores
    y = (rng.random(codes.size) < score).astype(np.int64)
    decided = score >= 0.5
    got = realized_segments(codes, 9, score, decided, y)
    for k in range(9):
        rows = codes == k
        for m in METRICS:
            assert got.values[m][k] == pytest.approx(SKLEARN[m](y[rows], score[rows], decided[rows]), abs=1e-12), m
    assert got.rows.sum() == codes.size and np.array_equal(got.positives, np.bincount(codes, weights=y))


def test_undefined_metrics_are_nan_not_zero():
    score = np.array([0.1, 0.2, 0.3])  # nothing predicted positive; one outcome class only
    got = realized_segments(np.zeros(3, dtype=np.int64), 1, score, score >= 0.5, np.zeros(3, dtype=np.int64))
    assert np.isnan(got.values["precision"][0]) and np.isnan(got.values["roc_auc"][0])
    assert got.values["accuracy"][0] == 1.0


def test_estimates_land_on_the_outcomes_their_probabilities_draw_within_the_stated_uncertainty():
    """Outcomes drawn from calibrated probabilities, 400 chunks of 2,000 rows: the estimate is unbiased and the
    realized metric lies within its 95% interval about 95% of the time (not a rubber stamp: not always)."""
    rng = np.random.default_rng(1)
    chunks, size = 400, 2_000
    codes = np.repeat(np.arange(chunks), size)
    p = rng.beta(1.3, 2.4, codes.size)
    y = (rng.random(codes.size) < p).astype(np.int64)
    estimated = estimate_segments(codes, chunks, p, p >= 0.5)
    realized = realized_segments(codes, chunks, p, p >= 0.5, y)
    for m in METRICS:
        error = estimated.values[m] - realized.values[m]
        se = estimated.standard_errors[m]
        inside = np.mean(np.abs(error) <= 1.96 * se)
        assert 0.92 <= inside <= 0.995, (m, inside)
        assert abs(error.mean()) < 0.25 * se.mean(), (m, error.mean(), se.mean())


def test_calibration_check_fits_a_calibrator_that_removes_the_bias_of_overconfident_probabilities():
    rng = np.random.default_rng(2)
    truth = rng.beta(1.3, 2.4, 12_000)
    overconfident = truth**0.6  # ranks right, probabilities too high
    labels = (rng.random(truth.size) < truth).astype(np.int64)
    check = check_calibration(labels, overconfident, seed=0)
    assert check.method in ("isotonic", "platt") and check.ece > 0.1
    assert min(check.ece_out_of_fold.values()) < 0.02
    assert check.metadata()["criterion"].startswith("the lowest of the raw held-out ECE")
    fresh = rng.beta(1.3, 2.4, 200_000)
    outcome = (rng.random(fresh.size) < fresh).astype(np.int64)
    seen = fresh**0.6
    codes = np.zeros(fresh.size, dtype=np.int64)
    realized = realized_segments(codes, 1, seen, seen >= 0.5, outcome)
    raw = estimate_segments(codes, 1, seen, seen >= 0.5)
    calibrated = estimate_segments(codes, 1, check.calibrator.apply(seen), seen >= 0.5)
    for m in ("roc_auc", "precision", "recall"):  # raw: 0.03 to 0.15 off; calibrated: within 0.01
        assert abs(raw.values[m][0] - realized.values[m][0]) > 0.03, m
        assert abs(calibrated.values[m][0] - realized.values[m][0]) < 0.015, m


def test_calibrators_apply_as_scikit_learn_predicts_and_round_trip_through_json():
    rng = np.random.default_rng(3)
    p = rng.random(5_000)
    y = (rng.random(p.size) < p**2).astype(np.int64)
    isotonic = fit_isotonic(p, y)
    queries = np.concatenate([rng.random(10_000), [-0.5, 0.0, 1.0, 1.5]])  # out of the fitted range: clipped
    sklearn = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y)
    np.testing.assert_array_equal(isotonic.apply(queries), sklearn.predict(queries))
    for calibrator in (isotonic, Calibrator("platt", slope=1.7, intercept=-0.4), Calibrator()):
        again = Calibrator.from_json(calibrator.to_json())
        np.testing.assert_array_equal(again.apply(queries[:-4]), calibrator.apply(queries[:-4]))
    platt = Calibrator("platt", slope=2.0, intercept=0.5).apply(np.array([0.5]))
    assert platt[0] == pytest.approx(1 / (1 + np.exp(-0.5)))
    with pytest.raises(ValueError, match="unknown calibration method"):
        Calibrator.from_json('{"method": "magic"}')
    # Never one that reverses the model's ranking: the estimate ranks rows by the calibrated probability
    with pytest.raises(ValueError, match="reverse the model's ranking"):
        Calibrator("platt", slope=-1.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibrator("isotonic", x=(0.1, 0.5), y=(0.6, 0.2))
    assert expected_calibration_error(y, isotonic.apply(p)) < expected_calibration_error(y, p)


def test_platt_is_chosen_when_it_calibrates_best():
    rng = np.random.default_rng(4)
    z = rng.normal(-0.5, 1.5, 3_000)
    labels = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(np.int64)
    check = check_calibration(labels, 1 / (1 + np.exp(-(2.5 * z + 0.5))), seed=4)  # a logit-linear distortion
    assert check.method == "platt", check.metadata()
    assert check.calibrator.slope == pytest.approx(0.4, abs=0.08)  # undoes the 2.5x stretch


# ------------------------------------------------------------------------------------------- the typed entry point


def _predictions(rows: int, seed: int, **columns) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"model_name": "m", "model_version": "v1", "probability": rng.beta(1.3, 2.4, rows),
                         "ts": pd.Timestamp("2026-11-23T10:00:00Z") + pd.to_timedelta(rng.random(rows) * 7200, "s"),
                         **columns})


def test_estimate_quality_groups_chunks_and_says_when_there_are_enough_rows():
    frame = pd.concat([_predictions(20_000, 0, alias="purchase@production"),
                       _predictions(300, 1, alias="purchase@canary")], ignore_index=True)
    calibrations = {("m", "v1"): ModelCalibration(threshold=0.5)}
    groups = estimate_quality(frame, calibrations, by=["model_name", "model_version", "alias"])
    assert [g.group["alias"] for g in groups] == ["purchase@canary", "purchase@production"]
    canary, production = groups
    assert isinstance(canary, GroupEstimate) and canary.rows == 300 and production.rows == 20_000
    assert production.enough("roc_auc", 0.02) and not canary.enough("roc_auc", 0.02)
    low, high = canary.metrics["roc_auc"].ci95
    assert low < canary.metrics["roc_auc"].value < high and high - low > 0.04
    chunked = estimate_quality(frame, calibrations, chunk="1h")
    assert [str(g.group["chunk"]) for g in chunked] == ["2026-11-23 10:00:00+00:00", "2026-11-23 11:00:00+00:00"]
    assert sum(g.rows for g in chunked) == len(frame)
    assert json.dumps([g.as_dict() for g in chunked])  # plain JSON
    calibrated = estimate_quality(frame, {("m", "v1"): ModelCalibration(0.5, Calibrator("platt", slope=1.0, intercept=-1.0))})
    assert calibrated[0].expected_positive_rate < groups[1].expected_positive_rate  # the calibrator is applied


def test_estimate_quality_names_what_is_wrong():
    frame = _predictions(100, 0)
    with pytest.raises(ValueError, match="no calibration given for model version m:v1"):
        estimate_quality(frame, {})
    with pytest.raises(ValueError, match="probability of row 3 is 1.5"):
        estimate_quality(frame.assign(probability=np.where(np.arange(100) == 3, 1.5, 0.2)), {("m", "v1"): ModelCalibration(0.5)})
    with pytest.raises(ValueError, match="lack the column.*alias"):
        estimate_quality(frame, {("m", "v1"): ModelCalibration(0.5)}, by=["alias"])
    with pytest.raises(ValueError, match="not a duration"):
        estimate_quality(frame, {("m", "v1"): ModelCalibration(0.5)}, chunk="fortnightly")
    assert estimate_quality(frame.iloc[:0], {}) == []


def test_model_calibration_comes_from_the_store(trained_store):
    gbm = load_model("purchase_gbm")
    calibration = ModelCalibration.from_store(gbm.name, gbm.version)
    assert calibration.threshold == gbm.threshold and calibration.checked
    assert calibration.calibrator == gbm.calibrator()
    with pytest.raises(LookupError, match="not in the model store"):
        ModelCalibration.from_store("purchase_gbm", "nosuchversion")


# --------------------------------------------------------------------------- the drifted window, through the job


def drifted_students(rows: int, seed: int) -> pd.DataFrame:
    """Covariate shift into a region where the model is worse: students who took no practice exam and watched
    30 to 300 minutes (purchase_gbm's ROC AUC there is about 0.70, against 0.87 overall). The outcomes still follow
    the generator's law: the inputs moved, the relation did not."""
    pool = generate_purchase(rows * 8, seed=seed)
    region = pool[(pool["practice_exams_started"] == 0) & pool["minutes_watched"].between(30, 300)]
    assert len(region) >= rows
    return region.iloc[:rows].reset_index(drop=True)


def write_log(path, model, frame: pd.DataFrame, start: str, seconds: float, batch_rows: int = 200,
              alias: str = "purchase@production") -> list[str]:
    """Log the model's real predictions on `frame` with the service's own writer, batches spread over `seconds`
    from `start`; returns the prediction ids."""
    ids = new_ids(len(frame))
    log = PredictionLog(path, max_bytes=1 << 30)
    begins = range(0, len(frame), batch_rows)
    for number, begin in enumerate(begins):
        part = frame[PURCHASE.columns].iloc[begin : begin + batch_rows]
        proba = model.predict_proba(part)
        log.append(batch(part, proba, model.classify(proba), request_id=f"req-{number}", endpoint="/batch_predict",
                         model_name=model.name, model_version=model.version, variant=model.labels["variant"],
                         alias=alias, ids=ids[begin : begin + batch_rows],
                         ts=(pd.Timestamp(start) + pd.Timedelta(seconds=seconds * number / len(begins))).to_pydatetime()))
    log.close()
    return ids


@pytest.fixture(scope="module")
def drifted_window(trained_store, tmp_path_factory):
    """Purchase traffic for two hours: training-like, then drifted; outcomes for none yet."""
    folder = tmp_path_factory.mktemp("drifted")
    gbm = load_model("purchase_gbm")
    normal = generate_purchase(6_000, seed=21)
    drifted = drifted_students(6_000, seed=22)
    ids = write_log(folder / "log.jsonl", gbm, normal, "2026-11-23T10:00:00Z", 3600)
    ids += write_log(folder / "log.jsonl", gbm, drifted, "2026-11-23T11:00:00Z", 3600)
    labels = np.concatenate([normal[PURCHASE.label].to_numpy(), drifted[PURCHASE.label].to_numpy()])
    return folder, gbm, ids, labels


def _job(folder, outcomes, out: str, *extra: str):
    code = main(["--task", "purchase", "--log", str(folder / "log.jsonl"), "--outcomes", str(outcomes),
                 "--out", str(folder / out), "--state", str(folder / f"{out}.state.json"), "--no-evidently",
                 "--chunk", "1h", *extra])
    return code, json.loads((folder / out / "quality_purchase.json").read_text())


def test_the_estimate_drops_with_quality_in_a_drifted_window_before_any_outcome(drifted_window, capsys):
    folder, gbm, _, _ = drifted_window
    code, summary = _job(folder, folder / "no-outcomes-yet.jsonl", "before")
    out = capsys.readouterr().out
    assert code == 0, out
    assert summary["with_outcome"] == 0 and "estimates only" in summary["note"] and "estimates only" in out
    (group,) = summary["estimate"]["groups"]
    normal, drifted = group["chunks"]
    assert normal["rows"] == drifted["rows"] == 6_000
    assert summary["estimate"]["models"][f"{gbm.name}:{gbm.version}"]["calibrator"] == gbm.calibrator().method
    for m, drop in (("roc_auc", 0.1), ("accuracy", 0.05), ("recall", 0.2)):
        assert drifted["estimate"][m]["value"] < normal["estimate"][m]["value"] - drop, m
        assert drifted["estimate"][m]["ci95"][1] < normal["estimate"][m]["ci95"][0], m  # beyond sampling noise
    assert normal["estimate"]["roc_auc"]["value"] == pytest.approx(gbm.metadata["metrics"]["roc_auc"], abs=0.02)
    state = json.loads((folder / "before.state.json").read_text())["purchase"]
    (version,) = state["estimates"]
    assert version["rows"] == 12_000 and set(version["metrics"]) == set(METRICS)
    assert all(e is None for e in version["estimation_errors"].values())
    assert (folder / "before" / "quality_purchase_estimate.html").stat().st_size > 100_000


def test_once_outcomes_arrive_the_realized_drop_matches_the_estimate(drifted_window):
    folder, _, ids, labels = drifted_window
    store = OutcomeStore(folder / "outcomes.jsonl", 1 << 24)
    store.ingest([Outcome(i, int(y)) for i, y in zip(ids, labels)])
    code, summary = _job(folder, folder / "outcomes.jsonl", "after")
    assert code == 0
    (group,) = summary["estimate"]["groups"]
    normal, drifted = group["chunks"]
    for chunk in (normal, drifted):
        compared = chunk["on_rows_with_outcome"]
        for m in METRICS:
            assert abs(compared[m]["error"]) < 3 * compared[m]["standard_error"], (m, compared[m])
    assert drifted["on_rows_with_outcome"]["roc_auc"]["realized"] < normal["on_rows_with_outcome"]["roc_auc"]["realized"] - 0.1
    assert group["trust"]["roc_auc"]["chunks"] == 2 and group["trust"]["roc_auc"]["mean_abs_error"] < 0.03
    (quality,) = summary["groups"]  # the realized metrics of the quality table agree with the estimate's realized
    assert quality["metrics"]["roc_auc"] == pytest.approx(group["on_rows_with_outcome"]["roc_auc"]["realized"], abs=1e-4)
    version = json.loads((folder / "after.state.json").read_text())["purchase"]["estimates"][0]
    assert version["estimation_errors"]["roc_auc"] == group["on_rows_with_outcome"]["roc_auc"]["error"]


def test_a_bad_chunk_is_a_usage_error(drifted_window, capsys):
    folder, *_ = drifted_window
    with pytest.raises(SystemExit) as exit_:
        _job(folder, folder / "none.jsonl", "bad", "--chunk=fortnightly")
    assert exit_.value.code == 2 and "not a duration" in capsys.readouterr().err
