"""Features: edge cases, and a batch equals its rows one by one (no hidden state across rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data import generate_drive_stats, generate_purchase
from training.features import build_features


def _student(**overrides):
    record = {
        "student_country": "Canada",
        "days_on_platform": 12,
        "minutes_watched": 45.0,
        "courses_started": 1,
        "practice_exams_started": 0,
        "practice_exams_passed": 0,
        "minutes_spent_on_exams": 0.0,
    }
    return {**record, **overrides}


def test_zero_exams_and_zero_days_give_finite_features():
    features = build_features("purchase", pd.DataFrame([_student(days_on_platform=0, minutes_watched=0.0)]))
    assert features.loc[0, "exam_pass_rate"] == 0.0
    assert features.loc[0, "log_minutes_per_exam"] == 0.0
    assert features.loc[0, "log_minutes_per_day"] == 0.0
    assert np.isfinite(features.drop(columns="student_country").to_numpy()).all()


def test_pass_rate_and_minutes_per_day():
    features = build_features(
        "purchase",
        pd.DataFrame([_student(days_on_platform=10, minutes_watched=100.0, practice_exams_started=4, practice_exams_passed=3)]),
    )
    assert features.loc[0, "exam_pass_rate"] == 0.75
    assert np.isclose(features.loc[0, "log_minutes_per_day"], np.log1p(10.0))


def test_huge_values_stay_finite():
    huge = _student(days_on_platform=10**6, minutes_watched=1e9, courses_started=10**6,
                    practice_exams_started=10**6, practice_exams_passed=10**6, minutes_spent_on_exams=1e9)
    features = build_features("purchase", pd.DataFrame([huge]))
    assert np.isfinite(features.drop(columns="student_country").to_numpy()).all()


def test_batch_equals_rows_one_by_one():
    for task, frame in (("purchase", generate_purchase(50, seed=9)), ("drive_stats", generate_drive_stats(50, seed=9))):
        batch = build_features(task, frame)
        singles = pd.concat([build_features(task, frame.iloc[[i]]) for i in range(len(frame))])
        pd.testing.assert_frame_equal(batch, singles)
        assert batch.index.equals(frame.index)


def test_each_feature_is_made_of_the_inputs_declared_for_it():
    """training/features.py INPUTS: the explainer builds its hybrid rows feature by feature from it, so a feature
    must change with none but its declared inputs, and with each of them. Every input of a row is replaced in turn
    by the same input of another row (a shuffle of the column), on rows drawn as the models see them."""
    from training.features import INPUTS

    for task, frame in (("purchase", generate_purchase(2_000, seed=5)), ("drive_stats", generate_drive_stats(2_000, seed=5))):
        made = build_features(task, frame)
        assert list(INPUTS[task]) == list(made.columns), "one declaration per feature, in the model's order"
        inputs = sorted({c for used in INPUTS[task].values() for c in used})
        rng = np.random.default_rng(0)
        for column in inputs:
            moved = frame.copy()
            moved[column] = rng.permutation(moved[column].to_numpy())
            changed = build_features(task, moved) != made
            for feature, used in INPUTS[task].items():
                if column in used:
                    assert changed[feature].any(), f"{task}: {feature} is declared to use {column}, which never moves it"
                else:
                    assert not changed[feature].any(), f"{task}: {feature} moves with {column}, not declared for it"
