"""Data: generator invariants and determinism, and the loader's errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data import COUNTRIES, generate_drive_stats, generate_purchase, latest_fleet_day, load_dataset
from training.schema import DRIVE_STATS, PURCHASE
from training.validation import DataError


def test_purchase_generator_is_deterministic_per_seed():
    pd.testing.assert_frame_equal(generate_purchase(2_000, seed=7), generate_purchase(2_000, seed=7))
    assert not generate_purchase(2_000, seed=7).equals(generate_purchase(2_000, seed=8))


def test_purchase_generator_invariants():
    frame = generate_purchase(100_000, seed=1)
    assert list(frame.columns) == [*PURCHASE.columns, "purchased"]
    assert (frame["practice_exams_passed"] <= frame["practice_exams_started"]).all()
    assert (frame[PURCHASE.numerical] >= 0).all().all()
    assert frame.notna().all().all()
    shares = frame["student_country"].value_counts(normalize=True)
    for country, share, _ in COUNTRIES:
        assert abs(shares[country] - share) < 0.01, country
    minutes = frame["minutes_watched"]
    assert minutes.max() > 50 * minutes.median(), "watch minutes should be heavy-tailed"
    assert 0.05 < (minutes == 0).mean() < 0.08
    assert 0.2 < frame["purchased"].mean() < 0.5


def test_drive_generator_is_deterministic_and_rare_positive():
    frame = generate_drive_stats(200_000, seed=3)
    pd.testing.assert_frame_equal(frame, generate_drive_stats(200_000, seed=3))
    assert list(frame.columns) == [*DRIVE_STATS.columns, "failure"]
    assert 0.003 < frame["failure"].mean() < 0.02
    assert (frame[["smart_5", "smart_187", "smart_188", "smart_197", "smart_198"]] >= 0).all().all()
    assert (frame["smart_5"] == 0).mean() > 0.8, "SMART counters are mostly zero"
    # failing drives carry more reallocated sectors: the label has signal
    assert frame.loc[frame.failure == 1, "smart_5"].mean() > 3 * frame.loc[frame.failure == 0, "smart_5"].mean()


def test_latest_fleet_day_has_one_row_per_drive_and_no_label():
    day = latest_fleet_day(300, seed=5)
    assert len(day) == 300 and day["serial_number"].is_unique
    assert "failure" not in day.columns
    assert set(DRIVE_STATS.columns) <= set(day.columns)


def test_loader_reads_csv_and_parquet_folder(tmp_path):
    frame = generate_purchase(500, seed=2)
    frame.to_csv(tmp_path / "students.csv", index=False)
    (tmp_path / "parts").mkdir()
    frame.iloc[:250].to_parquet(tmp_path / "parts" / "a.parquet")
    frame.iloc[250:].to_parquet(tmp_path / "parts" / "b.parquet")
    from_csv = load_dataset(tmp_path / "students.csv", PURCHASE)
    from_parquet = load_dataset(tmp_path / "parts", PURCHASE)
    assert len(from_csv) == len(from_parquet) == 500
    np.testing.assert_allclose(from_csv["minutes_watched"], frame["minutes_watched"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["minutes_watched", "courses_started"]), "missing column(s): minutes_watched, courses_started"),
        (lambda f: f.drop(columns=["purchased"]), "missing label column 'purchased'"),
        (lambda f: f.assign(days_on_platform=f["days_on_platform"].astype(object).where(f.index != 3, "many")), "row 5: days_on_platform is not a number"),
        (lambda f: f.assign(courses_started=f["courses_started"].where(f.index != 0, -2)), "row 2: courses_started must be >= 0"),
        (lambda f: f.assign(practice_exams_passed=f["practice_exams_started"] + (f.index == 1)), "row 3: practice_exams_passed cannot exceed practice_exams_started."),
        (lambda f: f.assign(student_country=f["student_country"].where(f.index != 2, "  ")), "row 4: student_country must have at least 1 character(s)"),
        (lambda f: f.assign(purchased=f["purchased"].where(f.index != 4, 7)), "row 6: purchased must be 0 or 1"),
    ],
)
def test_loader_errors_name_the_column_and_row(tmp_path, change, message):
    path = tmp_path / "bad.csv"
    change(generate_purchase(20, seed=4)).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        load_dataset(path, PURCHASE)
    assert message in str(error.value)


def test_loader_rejects_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope.csv", PURCHASE)
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(DataError, match="expected a .csv or .parquet"):
        load_dataset(tmp_path / "x.xlsx", PURCHASE)
