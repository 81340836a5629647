"""Feature engineering: the one module both training and serving call, so the two can never drift apart.

Every function takes the validated raw input columns and returns the model's feature frame, vectorized over the
whole batch and safe for zero denominators and huge values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def _ratio(numerator: pd.Series, denominator: pd.Series) -> np.ndarray:
    num = numerator.to_numpy(dtype=np.float64)
    den = denominator.to_numpy(dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def purchase_features(raw: pd.DataFrame) -> pd.DataFrame:
    active_days = np.maximum(raw["days_on_platform"].to_numpy(dtype=np.float64), 1.0)
    minutes = raw["minutes_watched"].to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            "student_country": raw["student_country"].to_numpy(),
            "days_on_platform": raw["days_on_platform"].to_numpy(dtype=np.float64),
            "log_minutes_watched": np.log1p(minutes),
            "courses_started": raw["courses_started"].to_numpy(dtype=np.float64),
            "practice_exams_started": raw["practice_exams_started"].to_numpy(dtype=np.float64),
            "exam_pass_rate": _ratio(raw["practice_exams_passed"], raw["practice_exams_started"]),
            "log_minutes_per_day": np.log1p(minutes / active_days),
            "log_minutes_per_exam": np.log1p(_ratio(raw["minutes_spent_on_exams"], raw["practice_exams_started"])),
        },
        index=raw.index,
    )


def drive_features(raw: pd.DataFrame) -> pd.DataFrame:
    smart = ["smart_5", "smart_187", "smart_188", "smart_197", "smart_198"]
    counts = raw[smart].to_numpy(dtype=np.float64)
    features = pd.DataFrame(np.log1p(counts), columns=[f"log_{c}" for c in smart], index=raw.index)
    features.insert(0, "drive_model", raw["drive_model"].to_numpy())
    features["capacity_tb"] = raw["capacity_tb"].to_numpy(dtype=np.float64)
    features["age_years"] = raw["power_on_hours"].to_numpy(dtype=np.float64) / 8766.0
    features["any_uncorrectable"] = (raw["smart_187"].to_numpy() > 0).astype(np.float64)
    features["temperature_c"] = raw["temperature_c"].to_numpy(dtype=np.float64)
    return features


FEATURES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "purchase": purchase_features,
    "drive_stats": drive_features,
}

# The raw inputs each feature is computed from: the explainer (training/explain) builds its hybrid rows feature by
# feature from them; tests/test_features.py holds every function to its declaration.
INPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "purchase": {
        "student_country": ("student_country",),
        "days_on_platform": ("days_on_platform",),
        "log_minutes_watched": ("minutes_watched",),
        "courses_started": ("courses_started",),
        "practice_exams_started": ("practice_exams_started",),
        "exam_pass_rate": ("practice_exams_passed", "practice_exams_started"),
        "log_minutes_per_day": ("minutes_watched", "days_on_platform"),
        "log_minutes_per_exam": ("minutes_spent_on_exams", "practice_exams_started"),
    },
    "drive_stats": {
        "drive_model": ("drive_model",),
        **{f"log_{c}": (c,) for c in ("smart_5", "smart_187", "smart_188", "smart_197", "smart_198")},
        "capacity_tb": ("capacity_tb",),
        "age_years": ("power_on_hours",),
        "any_uncorrectable": ("smart_187",),
        "temperature_c": ("temperature_c",),
    },
}


def build_features(task: str, raw: pd.DataFrame) -> pd.DataFrame:
    return FEATURES[task](raw)
