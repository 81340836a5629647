"""Numbers as clients send them, one rule for every validator: an integer field accepts a float with no fractional
part (12.0) and refuses 12.5, "12" and true; nothing else is coerced.

The property test feeds the same records to the JSON request validator (pydantic, what the endpoints run) and
to the file validator (`validate_frame`, what training and scoring run) and requires the same verdict on every
record and the same accepted values.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.codecs.errors import CodecError
from serving.codecs.records import RecordsValidator
from training.schema import DRIVE_STATS, PURCHASE, PredictRequest, input_schema, record_model, rules_of
from training.validation import validate_frame

SCHEMAS = {task.name: input_schema(task) for task in (PURCHASE, DRIVE_STATS)}
VALIDATORS = {
    "purchase": RecordsValidator(PURCHASE.record, list(PURCHASE.rules), 100),
    "drive_stats": RecordsValidator(
        record_model(SCHEMAS["drive_stats"], "drive_record"), rules_of(SCHEMAS["drive_stats"]), 100
    ),
}
BASE = {
    "purchase": {
        "student_country": "Canada",
        "days_on_platform": 12,
        "minutes_watched": 45.0,
        "courses_started": 1,
        "practice_exams_started": 2,
        "practice_exams_passed": 1,
        "minutes_spent_on_exams": 0.0,
    },
    "drive_stats": {
        "drive_model": "ST12000NM0007",
        "capacity_tb": 12.0,
        "power_on_hours": 21000,
        "smart_5": 0,
        "smart_187": 0,
        "smart_188": 0,
        "smart_197": 0,
        "smart_198": 0,
        "temperature_c": 31.0,
    },
}

# What a JSON client can send in any field. Text without surrogates: JSON cannot carry a lone one.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=140)
whole_floats = st.integers(-10, 2_000_000).map(float)
values = st.one_of(
    st.integers(-10, 2_000_000),
    st.integers(-(10**25), 10**25),
    whole_floats,
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10, 2_000_000),
    st.booleans(),
    st.none(),
    text,
    st.integers(0, 2_000).map(str),
    whole_floats.map(repr),
)


def _json_verdict(task: str, record: dict) -> dict | None:
    """The validated values as the endpoints get them, or None when a request with this record is a 4xx."""
    body = json.dumps(record).encode()  # NaN and Infinity go out as the bare tokens some clients send
    try:
        return VALIDATORS[task].single_record(body)
    except CodecError:
        return None


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return float(a) == float(b) or (math.isnan(float(a)) and math.isnan(float(b)))
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("task", ["purchase", "drive_stats"])
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_json_requests_and_files_agree_on_every_value(task, data):
    columns = list(SCHEMAS[task]["columns"])
    records = []
    for _ in range(data.draw(st.integers(1, 4), label="records")):
        changed = data.draw(st.dictionaries(st.sampled_from(columns), values, max_size=3), label="changed")
        records.append({**BASE[task], **changed})
    valid, rejects = validate_frame(pd.DataFrame.from_records(records, columns=columns), SCHEMAS[task])
    for position, record in enumerate(records):
        from_json = _json_verdict(task, record)
        in_file = position in valid.index
        reason = rejects["reason"].get(position)
        assert in_file == (from_json is not None), f"{record}: JSON {from_json}, file: {reason}"
        if from_json is None:
            continue
        row = valid.loc[position]
        for column in columns:
            file_value = row[column].item() if isinstance(row[column], np.generic) else row[column]
            assert _same(from_json[column], file_value), (column, from_json[column], file_value)
            expected_type = {"integer": int, "number": float, "string": str}[SCHEMAS[task]["columns"][column]["type"]]
            assert type(from_json[column]) is expected_type


@pytest.mark.parametrize(
    ("value", "accepted"),
    [(12, 12), (12.0, 12), (1e3, 1000), (-0.0, 0), (12.5, None), ("12", None), (True, None), (None, None)],
)
def test_an_integer_field_takes_whole_floats_only(value, accepted):
    record = {**BASE["purchase"], "days_on_platform": value}
    from_json = _json_verdict("purchase", record)
    valid, _ = validate_frame(pd.DataFrame([record]), SCHEMAS["purchase"])
    if accepted is None:
        assert from_json is None and valid.empty
    else:
        assert from_json["days_on_platform"] == accepted and type(from_json["days_on_platform"]) is int
        assert valid["days_on_platform"].tolist() == [accepted] and valid["days_on_platform"].dtype == np.int64


def test_fractional_floats_get_a_message_that_says_so():
    with pytest.raises(CodecError) as rejected:
        VALIDATORS["purchase"].single_record(json.dumps({**BASE["purchase"], "courses_started": 1.5}).encode())
    [error] = rejected.value.detail
    assert error["loc"] == ["body", "courses_started"] and "fractional part" in error["msg"]


def test_the_openapi_schema_still_says_integer():
    properties = PredictRequest.model_json_schema()["properties"]
    assert properties["days_on_platform"]["type"] == "integer"
    assert SCHEMAS["purchase"]["columns"]["days_on_platform"]["type"] == "integer"


def test_csv_cells_are_text_whose_numbers_are_parsed():
    """A CSV has no types: "12" and "12.0" there are numbers, "12.5" in a count and "true" are not."""
    cells = ["12", "12.0", "12.5", "true", ""]
    frame = pd.DataFrame([{k: str(v) for k, v in BASE["purchase"].items()} for _ in cells])
    frame["days_on_platform"] = cells
    frame.loc[4, "days_on_platform"] = None  # what the CSV reader makes of an empty cell
    valid, rejects = validate_frame(frame, SCHEMAS["purchase"], text=True)
    assert valid["days_on_platform"].tolist() == [12, 12]
    assert rejects["reason"].tolist() == [
        "days_on_platform is not an integer",
        "days_on_platform is not a number",
        "days_on_platform is missing",
    ]
