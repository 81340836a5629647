"""Training data: deterministic synthetic generators for both tasks, and a loader for the user's own files.

Student purchases (seed 001). Each student has a latent intent z ~ N(0, 1) that nobody observes.
- country: a fixed mix led by the United States and India (see COUNTRIES).
- days_on_platform: lognormal around e^(2.6 + 0.4 z) days, so most students are weeks old and a few years old.
- minutes_watched: heavy-tailed (lognormal, sigma 1.3) and rising with intent and age; 6% watched nothing.
- courses_started: Poisson in minutes watched; practice_exams_started: Poisson in minutes and intent;
  practice_exams_passed: Binomial(started, pass-rate rising with intent), so passed <= started always;
  minutes_spent_on_exams: Gamma per exam started.
- purchase: Bernoulli(sigmoid(logit)) where the logit saturates in log minutes watched, peaks for students
  between one week and two months on the platform, rewards a high pass rate only once two or more exams were
  taken, and shifts by country (COUNTRIES' third column). Those shapes are what a linear model cannot follow
  and boosted trees can.

Hard-drive days (seed 000's drive_stats models). A fleet of drive models with their own capacities, error
propensities and temperatures. SMART counters are mostly zero; when non-zero they are heavy-tailed and more
likely on old drives. Failure odds rise steeply with reallocated (5), uncorrectable (187, 198) and pending (197)
sectors, mildly with timeouts (188), age and heat; about 1% of drive-days fail, as in real fleets.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from training.schema import Task, input_schema
from training.validation import DataError, validate_frame

# country, share of students, purchase log-odds offset
COUNTRIES: tuple[tuple[str, float, float], ...] = (
    ("United States", 0.28, 0.35),
    ("India", 0.16, -0.55),
    ("United Kingdom", 0.07, 0.30),
    ("Canada", 0.05, 0.25),
    ("Germany", 0.04, 0.20),
    ("Nigeria", 0.05, -0.45),
    ("Pakistan", 0.04, -0.60),
    ("Brazil", 0.04, -0.20),
    ("Australia", 0.03, 0.30),
    ("Egypt", 0.03, -0.50),
    ("Philippines", 0.03, -0.35),
    ("France", 0.03, 0.05),
    ("Spain", 0.02, 0.00),
    ("Mexico", 0.03, -0.15),
    ("Other", 0.10, -0.10),
)

# drive model, capacity (TB), fleet share, error propensity, failure log-odds offset, mean temperature (C)
DRIVE_MODELS: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("ST4000DM000", 4.0, 0.22, 0.06, 0.60, 33.0),
    ("ST12000NM0007", 12.0, 0.25, 0.04, 0.30, 36.0),
    ("HGST HMS5C4040BLE640", 4.0, 0.15, 0.02, -0.40, 30.0),
    ("TOSHIBA MG07ACA14TA", 14.0, 0.15, 0.03, 0.00, 38.0),
    ("WDC WUH721414ALE6L4", 14.0, 0.13, 0.02, -0.30, 35.0),
    ("ST8000NM0055", 8.0, 0.10, 0.05, 0.40, 34.0),
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_purchase(rows: int, seed: int = 42) -> pd.DataFrame:
    """Student engagement records with a `purchased` label; same seed, same frame."""
    rng = np.random.default_rng(seed)
    names, shares, offsets = zip(*COUNTRIES)
    country_idx = rng.choice(len(names), size=rows, p=np.asarray(shares) / sum(shares))
    z = rng.standard_normal(rows)
    days = np.floor(rng.lognormal(2.6 + 0.4 * z, 1.1)).astype(np.int64).clip(0, 3650)
    minutes = rng.lognormal(3.2 + 0.7 * z + 0.25 * np.log1p(days), 1.3)
    minutes = np.where(rng.random(rows) < 0.06, 0.0, np.round(minutes, 1))
    courses = rng.poisson(0.4 + minutes / 200.0).clip(0, 200)
    exams_started = rng.poisson(np.clip(0.15 * minutes**0.45 * np.exp(0.3 * z), 0, 80))
    pass_prob = _sigmoid(-0.2 + 0.9 * z)
    exams_passed = rng.binomial(exams_started, pass_prob)
    exam_minutes = np.round(rng.gamma(2.0, 9.0, rows) * exams_started, 1)

    pass_rate = np.divide(exams_passed, exams_started, out=np.zeros(rows), where=exams_started > 0)
    logit = (
        -2.6
        + np.asarray(offsets)[country_idx]
        + 2.4 * np.tanh(np.log1p(minutes) / 2.5 - 1.2)
        + 1.1 * ((days >= 7) & (days <= 60))
        - 0.8 * (days > 365)
        + 2.0 * pass_rate * (exams_started >= 2)
        + 0.4 * np.minimum(courses, 4) / 4
        + 0.5 * z
    )
    purchased = (rng.random(rows) < _sigmoid(logit)).astype(np.int64)
    return pd.DataFrame(
        {
            "student_country": np.asarray(names, dtype=object)[country_idx],
            "days_on_platform": days,
            "minutes_watched": minutes,
            "courses_started": courses.astype(np.int64),
            "practice_exams_started": exams_started.astype(np.int64),
            "practice_exams_passed": exams_passed.astype(np.int64),
            "minutes_spent_on_exams": exam_minutes,
            "purchased": purchased,
        }
    )


def _smart_counts(rng: np.random.Generator, propensity: np.ndarray, scale: float) -> np.ndarray:
    occurs = rng.random(propensity.shape[0]) < propensity
    return np.where(occurs, np.ceil(rng.lognormal(np.log(scale), 1.4, propensity.shape[0])), 0).astype(np.int64)


def generate_drive_stats(rows: int, seed: int = 42) -> pd.DataFrame:
    """Daily hard-drive statistics with a rare `failure` label; same seed, same frame."""
    rng = np.random.default_rng(seed)
    names, capacity, shares, propensity, offsets, temps = (np.asarray(c) for c in zip(*DRIVE_MODELS))
    model_idx = rng.choice(len(names), size=rows, p=shares.astype(float) / shares.astype(float).sum())
    hours = rng.integers(0, 6 * 8766, rows)
    age_years = hours / 8766.0
    base = propensity.astype(float)[model_idx] * (0.5 + age_years / 3.0)
    smart_5 = _smart_counts(rng, base, 8.0)
    smart_187 = _smart_counts(rng, base * 0.6, 3.0)
    smart_188 = _smart_counts(rng, base * 0.8, 2.0)
    smart_197 = _smart_counts(rng, base * 0.7, 4.0)
    smart_198 = np.where(rng.random(rows) < 0.7, smart_197, _smart_counts(rng, base * 0.3, 2.0))
    temperature = np.round(rng.normal(temps.astype(float)[model_idx], 4.0), 0)

    logit = (
        -6.1
        + offsets.astype(float)[model_idx]
        + 0.9 * np.log1p(smart_5)
        + 1.3 * (smart_187 > 0)
        + 0.8 * np.log1p(smart_197)
        + 0.5 * np.log1p(smart_198)
        + 0.25 * np.log1p(smart_188)
        + 0.25 * age_years
        + 0.08 * np.clip(temperature - 40, 0, None)
    )
    failure = (rng.random(rows) < _sigmoid(logit)).astype(np.int64)
    return pd.DataFrame(
        {
            "drive_model": names[model_idx].astype(object),
            "capacity_tb": capacity.astype(float)[model_idx],
            "power_on_hours": hours.astype(np.int64),
            "smart_5": smart_5,
            "smart_187": smart_187,
            "smart_188": smart_188,
            "smart_197": smart_197,
            "smart_198": smart_198,
            "temperature_c": temperature,
            "failure": failure,
        }
    )


def latest_fleet_day(fleet_size: int, seed: int = 42, date: str = "2026-11-22") -> pd.DataFrame:
    """The fleet's most recent day: one row per drive, with a serial number, and no label (it is the future)."""
    day = generate_drive_stats(fleet_size, seed=seed + 1).drop(columns="failure")
    day.insert(0, "serial_number", [f"ZA{seed:02d}{i:06d}" for i in range(fleet_size)])
    day.insert(1, "date", date)
    return day


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a training frame, saved with the model so its data can be traced."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes() + ",".join(frame.columns).encode()).hexdigest()[:16]


def read_table(path: str | Path) -> pd.DataFrame:
    """Read CSV, Parquet, or a folder of Parquet files."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    if path.suffix.lower() in {".csv", ".gz", ".txt"}:
        return pd.read_csv(path)
    raise DataError(f"{path}: expected a .csv or .parquet file or a folder of Parquet files")


def load_dataset(path: str | Path, task: Task, max_reported: int = 5) -> pd.DataFrame:
    """Load the user's labelled data for `task`; errors name missing columns and the rows that break rules."""
    frame = read_table(path)
    if frame.empty:
        raise DataError(f"{path}: the file has no rows")
    schema = input_schema(task)
    if task.label not in frame.columns:
        raise DataError(f"{path}: missing label column {task.label!r}")
    text = not (Path(path).is_dir() or Path(path).suffix.lower() in {".parquet", ".pq"})  # CSV: cells are text
    valid, rejects = validate_frame(frame, schema, text=text)
    labels = frame[task.label]
    bad_label = ~labels.isin([0, 1, True, False])
    if len(rejects) or bad_label.any():
        lines = [f"row {i + 2}: {reason}" for i, reason in rejects["reason"].head(max_reported).items()]
        lines += [f"row {i + 2}: {task.label} must be 0 or 1" for i in labels[bad_label].index[:max_reported]]
        total = len(set(rejects.index) | set(labels.index[bad_label]))
        raise DataError(f"{path}: {total} invalid row(s) (row numbers count the header as row 1):\n" + "\n".join(lines))
    valid[task.label] = labels.astype(np.int64).to_numpy()
    return valid.reset_index(drop=True)
