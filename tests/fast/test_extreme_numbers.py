"""Extreme numbers at every columnar door, property-based: JSON records (/batch_predict's fast path), V2 tensors
(JSON and binary) and Arrow columns. schemathesis found a 500 on /batch_predict with integers such as
4127027048665607680 and floats near 1e308: pyarrow refused the column and serving.columns answered (None, None).

For every input the verdict is either a frame holding exactly the values sent, or a client error that names the
field (and the record, for JSON records); never another exception. For JSON records the pydantic record model is
the oracle: a batch is accepted exactly when every record is, and the errors name exactly the refused fields.
No model is needed: these are the codecs and the validator the endpoints run.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from serving.codecs import arrow
from serving.codecs.columns import ColumnsInvalid, validate_columns
from serving.codecs.errors import CodecError
from serving.codecs.v2_tensors import NUMPY_TYPES, V2Invalid, decode_inputs, parse_request
from serving.codecs.records import purchase_validator
from training.schema import PURCHASE, PredictRequest, input_schema

SCHEMA = input_schema(PURCHASE)
UNBOUNDED = {"columns": {"n": {"type": "integer"}, "x": {"type": "number"}}, "rules": []}  # the int64/float64 edges
VALIDATOR = purchase_validator(100)
RECORD = {"student_country": "Canada", "days_on_platform": 12, "minutes_watched": 45.0, "courses_started": 1,
          "practice_exams_started": 2, "practice_exams_passed": 1, "minutes_spent_on_exams": 0.0}
NUMERIC = [c for c, spec in SCHEMA["columns"].items() if spec["type"] != "string"]
INTEGER = {c for c, spec in SCHEMA["columns"].items() if spec["type"] == "integer"}
EXAMPLES = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

EDGE_INTS = [0, 1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 4127027048665607680, 10**20, 10**30]
EDGE_FLOATS = [0.0, -0.0, 5e-324, 0.5, 1e9, 1e9 + 0.5, 2.0**53, 2.0**63, 1e308, 1.7976931348623157e308]
ints = st.sampled_from(EDGE_INTS + [-v for v in EDGE_INTS]) | st.integers(-(2**70), 2**70) | st.integers(0, 2_000_000)
floats = st.sampled_from(EDGE_FLOATS + [-v for v in EDGE_FLOATS]) | st.floats(allow_nan=False, allow_infinity=False)
numbers = ints | floats  # what JSON can carry (NaN and Infinity are not JSON; the hostile-input table sends them)


def _refused_fields(record: dict) -> set[str]:
    try:
        PredictRequest.model_validate_json(json.dumps(record))  # as the endpoint reads it: from JSON
    except ValidationError as exc:
        return {e["loc"][0] for e in exc.errors()}
    return set()


def _equal(sent: object, got: object, integer: bool) -> bool:
    return got == (int(sent) if integer else float(sent)) and (not integer or float(sent).is_integer())


@EXAMPLES
@given(data=st.data())
def test_json_records_with_extreme_numbers(data):
    records = []
    for _ in range(data.draw(st.integers(1, 4), label="records")):
        changed = data.draw(st.dictionaries(st.sampled_from(NUMERIC), numbers, min_size=1, max_size=3), label="changed")
        records.append({**RECORD, **changed})
    refused = {(i, f) for i, r in enumerate(records) for f in _refused_fields(r)}
    rule_broken = any(r["practice_exams_passed"] > r["practice_exams_started"] for r in records)
    try:
        frame = VALIDATOR.batch_body(json.dumps({"records": records}).encode())
    except CodecError as exc:
        assert exc.status == 422
        if isinstance(exc.detail, str):  # only the cross-field rule is a message of its own
            assert not refused and rule_broken and "Offending records" in exc.detail
        else:
            assert {(e["loc"][2], e["loc"][3]) for e in exc.detail} == refused
        return
    assert not refused and not rule_broken
    for i, record in enumerate(records):
        for field in NUMERIC:
            assert _equal(record[field], frame[field].iloc[i], field in INTEGER), (field, record[field])


def _decode_v2(body: bytes, header_length: str | None = None):
    request, binary = parse_request(body, header_length)
    return validate_columns(decode_inputs(request, binary).columns, UNBOUNDED)


def _check_v2_verdict(name: str, call) -> list | None:
    """The accepted column's values, or None when refused with a message naming the input."""
    try:
        frame = call()
    except (V2Invalid, ColumnsInvalid) as exc:
        message = exc.message("input") if isinstance(exc, ColumnsInvalid) else str(exc)
        assert f"input {name!r}" in message or "the body is not JSON" in message, message
        return None
    return frame[name].tolist()


@EXAMPLES
@given(
    datatype=st.sampled_from(["INT64", "INT32", "INT8", "UINT64", "UINT8", "FP64", "FP32"]),
    column=st.sampled_from(["n", "x"]),
    values=st.lists(numbers, min_size=1, max_size=4),
)
def test_v2_json_tensors_with_extreme_numbers(datatype, column, values):
    other = "x" if column == "n" else "n"
    body = json.dumps({"inputs": [
        {"name": column, "datatype": datatype, "shape": [len(values), 1], "data": values},
        {"name": other, "datatype": "INT64", "shape": [len(values), 1], "data": [1] * len(values)},
    ]}).encode()
    got = _check_v2_verdict(column, lambda: _decode_v2(body))
    if "INT" in datatype:  # integers of the datatype's range (orjson reads integers past 2**64 as floats: refused)
        info = np.iinfo(NUMPY_TYPES[datatype])
        fits, as_sent = all(type(v) is int and info.min <= v <= info.max for v in values), values
    else:  # an FP tensor's element is the nearest float to the JSON number: rounding is what FP64 means
        fits, as_sent = True, [float(v) for v in values]
    if column == "n":
        fits = fits and all(float(v).is_integer() and -(2**63) <= v < 2**63 for v in as_sent)
    assert (got is not None) == fits, (values, got)  # refused exactly when a value does not fit datatype or column
    for sent, value in zip(as_sent, got or []):
        assert _equal(sent, value, column == "n")


@EXAMPLES
@given(
    datatype=st.sampled_from(["INT64", "UINT64", "FP64", "FP32", "FP16", "INT8"]),
    column=st.sampled_from(["n", "x"]),
    raw=st.binary(min_size=8, max_size=40),
)
def test_v2_binary_tensors_with_any_bytes(datatype, column, raw):
    dtype = np.dtype(NUMPY_TYPES[datatype])
    rows = len(raw) // dtype.itemsize
    raw = raw[: rows * dtype.itemsize]
    other = "x" if column == "n" else "n"
    header = json.dumps({"inputs": [
        {"name": column, "datatype": datatype, "shape": [rows, 1], "parameters": {"binary_data_size": len(raw)}},
        {"name": other, "datatype": "INT64", "shape": [rows, 1], "data": [1] * rows},
    ]}).encode()
    sent = np.frombuffer(raw, dtype=dtype)
    got = _check_v2_verdict(column, lambda: _decode_v2(header + raw, str(len(header))))
    if got is None:
        return
    assert rows > 0 and np.isfinite(sent.astype(np.float64)).all()
    for value, back in zip(sent.tolist(), got):
        assert _equal(value, back, column == "n")


def _arrow(values: st.SearchStrategy, build) -> st.SearchStrategy:
    return st.lists(values, min_size=1, max_size=5).map(build)


arrow_floats = st.sampled_from(EDGE_FLOATS + [-v for v in EDGE_FLOATS] + [2.0**70, float("nan"), float("inf")]) | st.floats()
arrow_columns = st.one_of(
    _arrow(st.sampled_from([0, -1, 2**53 + 1, 2**63 - 1, -(2**63)]) | st.integers(-(2**63), 2**63 - 1) | st.none(),
           lambda v: pa.array(v, pa.int64())),
    _arrow(st.sampled_from([1, 2**63 - 1, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1) | st.none(),
           lambda v: pa.array(v, pa.uint64())),
    _arrow(arrow_floats | st.none(), lambda v: pa.array(v, pa.float64())),
    _arrow(st.floats(width=32), lambda v: pa.array(v, pa.float32())),
    _arrow(st.floats(width=16), lambda v: pa.array(np.array(v, dtype=np.float16))),
)


@EXAMPLES
@given(column=st.sampled_from(["n", "x"]), values=arrow_columns, bounded=st.booleans())
def test_arrow_columns_with_extreme_numbers(column, values, bounded):
    """Any numeric Arrow column: through the real Arrow reader, into the bounded purchase schema or the unbounded one."""
    name, schema = (column, UNBOUNDED) if not bounded else ("days_on_platform" if column == "n" else "minutes_watched", SCHEMA)
    columns = {name: values}
    if bounded:
        columns |= {c: pa.array([RECORD[c]] * len(values)) for c in SCHEMA["columns"] if c != name}
        columns["practice_exams_passed"] = pa.array([0] * len(values))  # the rule never hides a number problem
    else:
        columns["x" if column == "n" else "n"] = pa.array([1] * len(values))
    body = arrow.write_stream(columns)
    try:
        frame = validate_columns(arrow.read_columns(body, 100), schema)
    except ColumnsInvalid as exc:
        assert f"column {name!r}" in exc.message()
        return
    sent = values.to_pylist()
    assert all(v is not None for v in sent)
    for value, back in zip(sent, frame[name].tolist()):
        assert _equal(value, back, schema["columns"][name]["type"] == "integer")


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ([4127027048665607680, 1e308], "column 'x' holds an integer beyond +-2**53 among floats"),
        ([2**64, 1.5], "column 'x' holds an integer beyond +-2**53 among floats"),
        ([2**63, 1], "column 'n' is out of the 64-bit integer range (offending rows, 0-based: 0)"),
        # typed arrays that astype(int64) used to wrap or saturate, silently
        (pa.array([3, 2**64 - 1], pa.uint64()), "column 'n' is out of the 64-bit integer range (offending rows, 0-based: 1)"),
        (np.array([2.0**70, 3.0]), "column 'n' is out of the 64-bit integer range (offending rows, 0-based: 0)"),
    ],
)
def test_columns_pyarrow_refuses_are_named_not_none(values, needle):
    """The root cause of the 500: pyarrow refused the column, and no value was named, so the column was None."""
    column = "n" if needle.startswith("column 'n'") else "x"
    other = "x" if column == "n" else "n"
    with pytest.raises(ColumnsInvalid) as caught:
        validate_columns({column: values, other: [1] * len(values)}, UNBOUNDED)
    assert needle in caught.value.message()
