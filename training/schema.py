"""Input schemas of the two tasks: the record models, their bounds and the cross-field rules.

The pydantic record models are the single source of truth. Training saves `input_schema(task)` with each model
(as plain JSON metadata), and anything that later holds only a model tag rebuilds the same validation from it
with `record_model(schema)`: the service never hard-codes a model's inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

# Bounds a client controls: generous for real data, small enough to keep arithmetic finite and strings short.
MAX_TEXT = 128
MAX_COUNT = 1_000_000
MAX_AMOUNT = 1e9


FRACTIONAL = "Input should be a valid integer, got a number with a fractional part"


def _whole_float_as_int(value: Any) -> Any:
    """12.0 -> 12: pandas and NumPy clients send integer counts as floats. Only a float with no fractional part
    is converted; 12.5 is refused here, and "12", true and everything else go on to the strict int check."""
    if type(value) is float and math.isfinite(value):
        if not value.is_integer():
            raise PydanticCustomError("int_from_float", FRACTIONAL)
        return int(value)
    return value


# An integer field as clients send it: an int, or a float with no fractional part; the JSON schema says "integer".
# The one rule for integer columns: training/validation.py (files) and serving/codecs/columns.py (columnar) follow it.
WholeNumber = Annotated[int, BeforeValidator(_whole_float_as_int)]


class StrictRecord(BaseModel):
    # Unknown fields are a client error (a typo would otherwise be silently ignored); NaN/Infinity are not data;
    # strict types: "12" or true in a count is a client bug, not a number (an int is still a valid float, and a
    # float with no fractional part a valid integer: WholeNumber).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True, strict=True)


class PredictRequest(StrictRecord):
    """One student's engagement record (seed 001)."""

    student_country: str = Field(min_length=1, max_length=MAX_TEXT, examples=["United States"])
    days_on_platform: WholeNumber = Field(ge=0, le=MAX_COUNT, examples=[45])
    minutes_watched: float = Field(ge=0, le=MAX_AMOUNT, examples=[320.5])
    courses_started: WholeNumber = Field(ge=0, le=MAX_COUNT, examples=[3])
    practice_exams_started: WholeNumber = Field(ge=0, le=MAX_COUNT, examples=[5])
    practice_exams_passed: WholeNumber = Field(ge=0, le=MAX_COUNT, examples=[3])
    minutes_spent_on_exams: float = Field(ge=0, le=MAX_AMOUNT, examples=[87.2])


class DriveDay(StrictRecord):
    """One hard drive's daily statistics (the drive-stats task of seed 000)."""

    drive_model: str = Field(min_length=1, max_length=MAX_TEXT, examples=["ST12000NM0007"])
    capacity_tb: float = Field(gt=0, le=1_000, examples=[12.0])
    power_on_hours: WholeNumber = Field(ge=0, le=MAX_COUNT, examples=[21_000])
    smart_5: WholeNumber = Field(ge=0, le=MAX_COUNT, description="Reallocated sectors count", examples=[0])
    smart_187: WholeNumber = Field(ge=0, le=MAX_COUNT, description="Reported uncorrectable errors", examples=[0])
    smart_188: WholeNumber = Field(ge=0, le=MAX_COUNT, description="Command timeouts", examples=[0])
    smart_197: WholeNumber = Field(ge=0, le=MAX_COUNT, description="Current pending sectors", examples=[0])
    smart_198: WholeNumber = Field(ge=0, le=MAX_COUNT, description="Offline uncorrectable sectors", examples=[0])
    temperature_c: float = Field(ge=-40, le=150, examples=[31.0])


@dataclass(frozen=True)
class Rule:
    """A cross-field rule `left <= right`, checked vectorized over a whole batch."""

    left: str
    right: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"left": self.left, "op": "<=", "right": self.right, "message": self.message}


@dataclass(frozen=True)
class Task:
    name: str
    record: type[StrictRecord]
    label: str
    categorical: tuple[str, ...]
    rules: tuple[Rule, ...] = ()

    @property
    def columns(self) -> list[str]:
        return list(self.record.model_fields)

    @property
    def numerical(self) -> list[str]:
        return [c for c in self.columns if c not in self.categorical]


PURCHASE = Task(
    name="purchase",
    record=PredictRequest,
    label="purchased",
    categorical=("student_country",),
    rules=(
        Rule(
            left="practice_exams_passed",
            right="practice_exams_started",
            message="practice_exams_passed cannot exceed practice_exams_started.",
        ),
    ),
)
DRIVE_STATS = Task(name="drive_stats", record=DriveDay, label="failure", categorical=("drive_model",))
TASKS: dict[str, Task] = {task.name: task for task in (PURCHASE, DRIVE_STATS)}

ColumnType = Literal["string", "integer", "number"]
_PY_TYPES: dict[str, Any] = {"string": str, "integer": WholeNumber, "number": float}
_BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength")
_FIELD_KWARGS = {
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "minLength": "min_length",
    "maxLength": "max_length",
}


def input_schema(task: Task) -> dict[str, Any]:
    """The JSON-able schema saved as model metadata: column types and bounds, categorical columns, rules."""
    properties = task.record.model_json_schema()["properties"]
    columns = {
        name: {"type": spec["type"], **{k: spec[k] for k in _BOUND_KEYS if k in spec}}
        for name, spec in properties.items()
    }
    return {
        "task": task.name,
        "columns": columns,
        "categorical": list(task.categorical),
        "rules": [rule.as_dict() for rule in task.rules],
    }


def rules_of(schema: dict[str, Any]) -> list[Rule]:
    return [Rule(left=r["left"], right=r["right"], message=r["message"]) for r in schema.get("rules", [])]


def record_model(schema: dict[str, Any], name: str = "Record") -> type[StrictRecord]:
    """Rebuild a strict record model from saved metadata, so any stored model's inputs can be validated."""
    fields: dict[str, Any] = {}
    for column, spec in schema["columns"].items():
        bounds = {_FIELD_KWARGS[k]: v for k, v in spec.items() if k in _FIELD_KWARGS}
        fields[column] = (_PY_TYPES[spec["type"]], Field(**bounds))
    return create_model(name, __base__=StrictRecord, **fields)
