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
