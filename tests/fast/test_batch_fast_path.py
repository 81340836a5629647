"""/batch_predict's fast path (orjson + serving.codecs.columns) against pydantic's: the same frame for every valid batch,
and for anything invalid the very errors pydantic gives (which record, which field, which rule)."""

from __future__ import annotations

import copy

import orjson
import pandas as pd
import pytest

from serving.codecs.errors import CodecError
from serving.codecs.records import purchase_validator, to_frame
from tests.test_service import SEED_RECORDS, students

VALIDATOR = purchase_validator(10_000)


def pydantic_frame(records: list[dict]) -> pd.DataFrame:
    return to_frame(VALIDATOR.batch.model_validate({"records": records}).records, VALIDATOR.columns)


def test_valid_batches_give_pydantics_frame():
    for records in (SEED_RECORDS, students(2_000, seed=3), [{**SEED_RECORDS[0], "student_country": "  Côte, d’Ivoire  "}]):
        body = orjson.dumps({"records": records})
        assert VALIDATOR._fast_batch(body) is not None, "a valid batch took the slow path"
        pd.testing.assert_frame_equal(VALIDATOR.batch_body(body), pydantic_frame(records))


def test_integer_fields_take_whole_floats_only():
    whole = VALIDATOR.batch_body(orjson.dumps({"records": [{**SEED_RECORDS[0], "courses_started": 3.0}]}))
    assert whole["courses_started"].tolist() == [3] and whole["courses_started"].dtype == "int64"
    for bad, kind in ((3.5, "int"), ("3", "int_type"), (True, "int_type")):
        with pytest.raises(CodecError) as caught:
            VALIDATOR.batch_body(orjson.dumps({"records": [SEED_RECORDS[1], {**SEED_RECORDS[0], "courses_started": bad}]}))
        [error] = caught.value.detail
        assert error["loc"] == ["body", "records", 1, "courses_started"] and kind in error["type"]


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r[2].update(days_on_platform=-1),
        lambda r: r[0].update(minutes_watched="inf"),
        lambda r: r[1].pop("student_country"),
        lambda r: r[1].update(coupon="X"),
        lambda r: r[1].update(coupon=r[1].pop("student_country")),  # as many fields as the columns, one renamed
        lambda r: r.__setitem__(1, list(r[1].values())),  # a record that is not an object
        lambda r: r[0].update(student_country=""),
        lambda r: r[2].update(practice_exams_passed=99),
        lambda r: r.clear(),
    ],
)
def test_invalid_batches_get_pydantics_errors(change):
    records = copy.deepcopy(SEED_RECORDS)
    change(records)
    body = orjson.dumps({"records": records})
    with pytest.raises(CodecError) as fast:
        VALIDATOR.batch_body(body)
    try:
        frame = pydantic_frame(records)
    except Exception as exc:  # noqa: BLE001 - pydantic's own verdict is the reference
        assert fast.value.status == 422 and exc.__class__.__name__ == "ValidationError"
        expected = [(["body", *e["loc"]], e["type"]) for e in exc.errors()]
        assert [(e["loc"], e["type"]) for e in fast.value.detail] == expected
        return
    # pydantic accepts the fields; only the business rule is broken, and the message names the record
    assert fast.value.detail.startswith("practice_exams_passed cannot exceed practice_exams_started.")
    assert len(frame) == 3 and "(0-based): 2." in fast.value.detail
