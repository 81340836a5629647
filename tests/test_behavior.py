"""Behaviour of the production models (Made-With-ML's tests/model/test_behavioral.py is the pattern): direction,
invariance and minimum-functionality checks, each from the generative story in training/data.py.

The models are the session's, trained by the real CLI and loaded from the store as the service loads them; the
records are fresh draws of the same generators (a seed training never used), then changed one field at a time.
"""

from __future__ import annotations

import bentoml
import numpy as np
import pandas as pd
import pytest

from training.data import generate_drive_stats, generate_purchase
from training.store import StoredModel, load_model

SMART = ["smart_5", "smart_187", "smart_188", "smart_197", "smart_198"]


def production(task: str) -> StoredModel:
    [model] = [
        m for m in bentoml.models.list() if m.info.labels.get("task") == task and m.info.labels.get("stage") == "production"
    ][:1]
    return load_model(str(model.tag))


@pytest.fixture(scope="module")
def purchase(trained_store) -> StoredModel:
    return production("purchase")


@pytest.fixture(scope="module")
def drive(trained_store) -> StoredModel:
    return production("drive_stats")


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    return generate_purchase(1_000, seed=2_024).drop(columns="purchased")


@pytest.fixture(scope="module")
def healthy_drives() -> pd.DataFrame:
    """Drive-days with every SMART counter at zero, the fleet's usual state."""
    days = generate_drive_stats(5_000, seed=2_024).drop(columns="failure")
    return days[(days[SMART] == 0).all(axis=1)].head(1_000).reset_index(drop=True)


def _over(model: StoredModel, frame: pd.DataFrame, column: str, levels: list[float]) -> np.ndarray:
    """Probabilities (records x levels) with `column` set to each level and everything else fixed."""
    return np.stack([model.predict_proba(frame.assign(**{column: level})) for level in levels], axis=1)


def _largest_drop(probabilities: np.ndarray) -> float:
    """How far any record's probability falls below its own value at a lower level."""
    return float((np.maximum.accumulate(probabilities, axis=1) - probabilities).max())


def test_more_minutes_watched_never_lower_the_purchase_probability_by_much(purchase, students):
    # The story: the logit rises (and saturates) in log minutes watched, all else equal.
    levels = [0.0, 5.0, 20.0, 60.0, 150.0, 400.0, 1_000.0, 3_000.0, 10_000.0]
    probabilities = _over(purchase, students, "minutes_watched", levels)
    assert _largest_drop(probabilities) <= 0.02
    means = probabilities.mean(axis=0)
    assert means[levels.index(1_000.0)] - means[0] >= 0.3, means.round(3)


def test_a_high_pass_rate_counts_once_two_or_more_exams_were_taken(purchase, students):
    # The story: +2.0 log-odds times the pass rate, only when at least two exams were started.
    def pass_rate_effect(started: int) -> np.ndarray:
        all_passed = purchase.predict_proba(students.assign(practice_exams_started=started, practice_exams_passed=started))
        none_passed = purchase.predict_proba(students.assign(practice_exams_started=started, practice_exams_passed=0))
        return all_passed - none_passed

    four = pass_rate_effect(4)
    assert (four > 0).all() and four.mean() >= 0.15, four.mean()
    one = pass_rate_effect(1)
    assert four.mean() > 3 * one.mean(), (four.mean(), one.mean())


def test_reallocated_pending_and_uncorrectable_sectors_raise_the_failure_probability(drive, healthy_drives):
    # The story: failure odds rise steeply with SMART 5, 187, 197 and 198 (log counts; 187 as "any").
    before = drive.predict_proba(healthy_drives)
    for column, count in (("smart_5", 50), ("smart_187", 3), ("smart_197", 20), ("smart_198", 20)):
        after = drive.predict_proba(healthy_drives.assign(**{column: count}))
        assert (after > before).all(), column
        assert after.mean() >= 2 * before.mean(), (column, after.mean(), before.mean())
    # Command timeouts (188) matter only mildly: they must not lower the risk.
    timeouts = drive.predict_proba(healthy_drives.assign(smart_188=5))
    assert (timeouts >= before - 0.005).all()


@pytest.mark.parametrize("column", ["smart_5", "smart_197", "smart_198"])
def test_more_bad_sectors_never_lower_the_failure_probability_by_much(drive, healthy_drives, column):
    probabilities = _over(drive, healthy_drives, column, [0, 1, 3, 10, 30, 100, 300, 1_000])
    assert _largest_drop(probabilities) <= 0.01
    assert probabilities[:, -1].mean() >= 10 * probabilities[:, 0].mean()


def test_predictions_do_not_depend_on_the_batch(purchase, drive, students, healthy_drives):
    """Invariance: a record's probability is the same alone, in any batch, in any order."""
    for model, frame in ((purchase, students.head(200)), (drive, healthy_drives.head(200))):
        together = model.predict_proba(frame)
        order = np.random.default_rng(0).permutation(len(frame))
        shuffled = model.predict_proba(frame.iloc[order].reset_index(drop=True))
        alone = np.array([model.predict_proba(frame.iloc[[i]])[0] for i in range(0, len(frame), 20)])
        np.testing.assert_allclose(shuffled, together[order], rtol=0, atol=1e-12)
        np.testing.assert_allclose(alone, together[::20], rtol=0, atol=1e-12)


def test_an_unseen_category_is_scored_like_any_other_unseen_one(purchase, drive, students, healthy_drives):
    """Invariance: a country or drive model the training data never held is "unknown", whatever its name."""
    for model, frame, column in (
        (purchase, students.head(200), "student_country"),
        (drive, healthy_drives.head(200), "drive_model"),
    ):
        first = model.predict_proba(frame.assign(**{column: "Atlantis"}))
        second = model.predict_proba(frame.assign(**{column: "never seen before"}))
        assert np.isfinite(first).all() and ((first > 0) & (first < 1)).all()
        np.testing.assert_array_equal(first, second)


def test_minimum_functionality_clear_cases(purchase, drive, healthy_drives):
    """Cases the story makes obvious get the obvious answer at the model's own threshold."""
    engaged = {
        "student_country": "United States",
        "days_on_platform": 30,
        "minutes_watched": 2_000.0,
        "courses_started": 4,
        "practice_exams_started": 6,
        "practice_exams_passed": 6,
        "minutes_spent_on_exams": 120.0,
    }
    idle = {**engaged, "days_on_platform": 700, "minutes_watched": 0.0, "courses_started": 0,
            "practice_exams_started": 0, "practice_exams_passed": 0, "minutes_spent_on_exams": 0.0}
    probability = purchase.predict_proba(pd.DataFrame([engaged, idle]))
    assert purchase.classify(probability).tolist() == [1, 0], probability
    failing = healthy_drives.head(50).assign(smart_5=500, smart_187=10, smart_197=100, smart_198=100)
    assert (drive.classify(drive.predict_proba(failing)) == 1).all()
    assert drive.classify(drive.predict_proba(healthy_drives)).mean() < 0.02
