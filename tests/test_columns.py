"""serving/codecs/columns.py: the vectorized validator for typed columns (fast tier, no server)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from serving.codecs.columns import MAX_NAMED_ROWS, ColumnsInvalid, validate_columns
from serving.codecs.records import purchase_validator
from training.schema import DRIVE_STATS, PURCHASE, input_schema

SCHEMA = input_schema(PURCHASE)
RECORDS = [
    {"student_country": "United States", "days_on_platform": 45, "minutes_watched": 320.5, "courses_started": 3,
     "practice_exams_started": 5, "practice_exams_passed": 3, "minutes_spent_on_exams": 87.2},
    {"student_country": " India ", "days_on_platform": 0, "minutes_watched": 0, "courses_started": 0,
     "practice_exams_started": 0, "practice_exams_passed": 0, "minutes_spent_on_exams": 0.0},
    {"student_country": "Brazil", "days_on_platform": 300, "minutes_watched": 12000.25, "courses_started": 9,
     "practice_exams_started": 12, "practice_exams_passed": 12, "minutes_spent_on_exams": 400.0},
]


def as_lists(records=RECORDS) -> dict[str, list]:
    return {column: [r[column] for r in records] for column in SCHEMA["columns"]}


def problems_of(columns, schema=SCHEMA):
    with pytest.raises(ColumnsInvalid) as caught:
        validate_columns(columns, schema)
    return {(p.column, p.kind): p for p in caught.value.problems}, caught.value


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda c: c, id="lists"),
        pytest.param(lambda c: {k: np.asarray(v) for k, v in c.items()}, id="numpy"),
        pytest.param(lambda c: dict(pa.table(c).to_pydict()), id="arrow-pydict"),
        pytest.param(lambda c: {k: pa.table(c).column(k) for k in c}, id="arrow-chunked"),
        pytest.param(lambda c: {k: s for k, s in pd.DataFrame(c).items()}, id="pandas"),
    ],
)
def test_valid_columns_give_the_same_frame_as_the_json_path(convert):
    frame = validate_columns(convert(as_lists()), SCHEMA)
    body = json.dumps({"records": RECORDS}).encode()
    expected = purchase_validator(10_000).batch_body(body)
    assert list(frame.columns) == list(SCHEMA["columns"])
    assert frame["student_country"].tolist() == ["United States", "India", "Brazil"]  # stripped, like pydantic
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
    assert frame.dtypes.to_dict() == {
        "student_country": object, "days_on_platform": np.int64, "minutes_watched": np.float64,
        "courses_started": np.int64, "practice_exams_started": np.int64, "practice_exams_passed": np.int64,
        "minutes_spent_on_exams": np.float64,
    }


def test_integer_columns_take_integral_floats_and_refuse_fractions():
    columns = as_lists()
    columns["days_on_platform"] = np.array([45.0, 12.0, 300.0])
    frame = validate_columns(columns, SCHEMA)
    assert frame["days_on_platform"].tolist() == [45, 12, 300] and frame["days_on_platform"].dtype == np.int64
    columns["days_on_platform"] = [45, 12.5, 300.0]
    found, exc = problems_of(columns)
    assert found[("days_on_platform", "not_integer")].rows == (1,)
    assert "'days_on_platform' must be an integer" in str(exc) and "0-based: 1)" in str(exc)


def test_number_columns_take_integers():
    columns = as_lists()
    columns["minutes_watched"] = np.array([1, 2, 3], dtype=np.int32)
    assert validate_columns(columns, SCHEMA)["minutes_watched"].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "values, rows",
    [
        (["45", 12, 300], (0,)),  # a string is never a number
        (np.array(["45", "12", "300"]), (0, 1, 2)),
        (pa.array(["45", "12", "300"]), (0, 1, 2)),
        ([45, True, 300], (1,)),  # a bool is never a number
        ([1.5, True, 3.0], (1,)),  # pyarrow alone would read this True as 1.0
        (np.array([True, False, True]), (0, 1, 2)),
        (pa.array([True, False, True]), (0, 1, 2)),
    ],
)
def test_strings_and_bools_are_never_numbers(values, rows):
    for column in ("days_on_platform", "minutes_watched"):
        found, exc = problems_of({**as_lists(), column: values})
        assert found[(column, "type")].rows == rows, exc
        assert "must hold" in str(exc)


def test_numbers_are_never_strings():
    found, _ = problems_of({**as_lists(), "student_country": [1, "India", 2.0]})
    assert found[("student_country", "type")].rows == (0, 2)
    found, _ = problems_of({**as_lists(), "student_country": np.array([1, 2, 3])})
    assert found[("student_country", "type")].count == 3


def test_nulls_nan_infinity_empty_and_long_strings_are_refused_by_row():
    columns = {
        **as_lists(),
        "student_country": ["ok", "   ", "x" * 129],
        "days_on_platform": pa.array([1, None, 3]),
        "minutes_watched": [1.0, None, 2.0],
        "minutes_spent_on_exams": np.array([np.nan, 1.0, np.inf]),
    }
    found, exc = problems_of(columns)
    assert found[("student_country", "empty")].rows == (1,)
    assert found[("student_country", "length")].rows == (2,)
    assert found[("days_on_platform", "null")].rows == (1,)
    assert found[("minutes_watched", "null")].rows == (1,)
    assert found[("minutes_spent_on_exams", "not_finite")].rows == (0, 2)
    assert "is NaN or infinite" in str(exc) and "is missing (null)" in str(exc)


def test_bounds_and_many_offending_rows_are_counted():
    n = 50
    columns = {c: [v] * n for c, v in RECORDS[0].items()}
    columns["courses_started"] = [-1] * n
    found, exc = problems_of(columns)
    problem = found[("courses_started", "bounds")]
    assert problem.rows == tuple(range(MAX_NAMED_ROWS)) and problem.count == n
    assert f"and {n - MAX_NAMED_ROWS} more" in str(exc) and "must be >= 0" in str(exc)


def test_exclusive_bounds_of_another_schema():
    schema = input_schema(DRIVE_STATS)
    columns = {c: [1, 1] for c in schema["columns"]}
    columns["drive_model"] = ["ST4000", "ST8000"]
    columns["capacity_tb"] = [0.0, 4.0]
    found, _ = problems_of(columns, schema)
    assert found[("capacity_tb", "bounds")].rows == (0,)
    assert "must be > 0" in found[("capacity_tb", "bounds")].describe()


def test_rule_names_rows_but_skips_rows_with_invalid_values():
    columns = as_lists()
    columns["practice_exams_passed"] = [9, 0, 99]
    columns["practice_exams_started"] = [5, 0, -1]  # row 2 is out of bounds: its rule is not judged
    found, exc = problems_of(columns)
    assert found[("practice_exams_passed", "rule")].rows == (0,)
    assert found[("practice_exams_started", "bounds")].rows == (2,)
    assert "practice_exams_passed cannot exceed practice_exams_started (offending rows, 0-based: 0)" in str(exc)


def test_missing_unexpected_and_uneven_columns():
    columns = as_lists()
    del columns["minutes_watched"]
    columns["coupon"] = [1, 2, 3]
    columns["days_on_platform"] = [1.5, 2, 3]
    found, _ = problems_of(columns)
    assert set(found) == {("minutes_watched", "missing_column"), ("coupon", "unexpected_column"),
                          ("days_on_platform", "not_integer")}
    found, exc = problems_of({**as_lists(), "courses_started": [1, 2]})
    assert found[("courses_started", "rows")].problem == "has 2 rows; the longest column has 3"


def test_no_rows_and_bad_shapes():
    _, exc = problems_of({c: [] for c in SCHEMA["columns"]})
    assert "no rows" in str(exc)
    found, _ = problems_of({**as_lists(), "courses_started": np.ones((3, 2))})
    assert ("courses_started", "shape") in found
    # [rows, 1] tensors are one value per row
    frame = validate_columns({**as_lists(), "courses_started": np.array([[1], [2], [3]])}, SCHEMA)
    assert frame["courses_started"].tolist() == [1, 2, 3]


def test_arrow_dictionary_strings_and_large_integers():
    table = pa.table(as_lists())
    country = pa.array(["United States", "India", "Brazil"]).dictionary_encode()
    columns = {name: table.column(name) for name in table.column_names}
    columns["student_country"] = country
    columns["days_on_platform"] = pa.array([1, 2, 3], type=pa.uint8())
    frame = validate_columns(columns, SCHEMA)
    assert frame["student_country"].tolist() == ["United States", "India", "Brazil"]
    found, _ = problems_of({**as_lists(), "days_on_platform": [1, 2**70, 3]})
    assert found[("days_on_platform", "bounds")].rows == (1,)
