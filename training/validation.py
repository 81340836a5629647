"""Vectorized validation of whole DataFrames against a saved input schema.

Files (training CSVs, the daily scoring job) are validated here column by column with NumPy, never row by row:
a million rows take well under a second. JSON requests are validated by pydantic-core instead (see
`serving/codecs/records.py`), which gives FastAPI's error shape; both read bounds from the same schema and share the
cross-field rule check below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from training.schema import Rule, rules_of

REASON = "reason"


class DataError(ValueError):
    """A file that cannot be used as a whole: missing columns, unreadable, empty."""


def rule_violations(frame: pd.DataFrame, rules: list[Rule]) -> list[tuple[Rule, np.ndarray]]:
    """Row positions that break each rule, one vectorized comparison per rule."""
    found = []
    for rule in rules:
        bad = np.flatnonzero(frame[rule.left].to_numpy() > frame[rule.right].to_numpy())
        if bad.size:
            found.append((rule, bad))
    return found


def missing_columns(frame: pd.DataFrame, schema: dict[str, Any]) -> list[str]:
    return [column for column in schema["columns"] if column not in frame.columns]


def _is_number(value: Any) -> bool:
    """A number as a typed source holds it: int or float (Python or NumPy), never a bool or a string."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an int past float's range: out of every bound
        return np.inf if value > 0 else -np.inf


def _numbers(values: pd.Series, text: bool) -> tuple[np.ndarray, np.ndarray]:
    """(values as float64, mask of present values that are not numbers), by the rule JSON requests follow
    (`training.schema.StrictRecord`): a bool or a string is not a number, except in a typeless file's text."""
    absent = values.isna().to_numpy()
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.full(len(values), np.nan), ~absent
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan), np.zeros(len(values), dtype=bool)
    if text:
        # CSV has no types: its cells are parsed, and what does not parse (e.g. "true") is not a number.
        arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return arr, np.isnan(arr) & ~absent
    # A typed column holding other objects (mixed records, a Parquet string column): value by value.
    typed = _mask(values, _is_number)
    arr = np.array([_as_float(v) if ok else np.nan for v, ok in zip(values.tolist(), typed)], dtype="float64")
    return arr, ~typed & ~absent


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _mask(values: pd.Series, predicate: Callable[[Any], bool]) -> np.ndarray:
    """predicate(value) for every value of an object column (missing values included)."""
    return np.fromiter(map(predicate, values.tolist()), dtype=bool, count=len(values))


def _check_numeric(values: pd.Series, spec: dict[str, Any], text: bool) -> tuple[pd.Series, dict[str, np.ndarray]]:
    arr, not_numbers = _numbers(values, text)
    problems: dict[str, np.ndarray] = {}
    absent = values.isna().to_numpy()
    problems["is missing"] = absent
    problems["is not a number"] = not_numbers
    finite = np.isfinite(arr)
    problems["is not finite"] = ~finite & ~np.isnan(arr)
    with np.errstate(invalid="ignore"):
        if spec["type"] == "integer":
            # The rule of `training.schema.WholeNumber`: a float with no fractional part is an integer.
            problems["is not an integer"] = finite & (np.floor(arr) != arr)
        if "minimum" in spec:
            problems[f"must be >= {spec['minimum']}"] = finite & (arr < spec["minimum"])
        if "exclusiveMinimum" in spec:
            problems[f"must be > {spec['exclusiveMinimum']}"] = finite & (arr <= spec["exclusiveMinimum"])
        if "maximum" in spec:
            problems[f"must be <= {spec['maximum']}"] = finite & (arr > spec["maximum"])
    return pd.Series(arr, index=values.index), problems


def _check_text(values: pd.Series, spec: dict[str, Any], text: bool) -> tuple[pd.Series, dict[str, np.ndarray]]:
    absent = values.isna().to_numpy()
    problems: dict[str, np.ndarray] = {"is missing": absent}
    if not text and pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        # As in JSON (strict str): 12 or true in a text field is not text. (A file's cell is text whatever it holds.)
        strings = _mask(values, _is_str)
        problems["is not a string"] = ~strings & ~absent
        values = values.where(strings)
    stripped = values.astype("string").str.strip()
    lengths = stripped.str.len().fillna(0).to_numpy()
    present = ~stripped.isna().to_numpy()
    minimum = spec.get("minLength", 1)
    problems[f"must have at least {minimum} character(s)"] = present & (lengths < minimum)
    if "maxLength" in spec:
        problems[f"must have at most {spec['maxLength']} characters"] = lengths > spec["maxLength"]
    return stripped.astype(object), problems


def validate_frame(
    frame: pd.DataFrame, schema: dict[str, Any], *, text: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame into typed valid rows and rejected rows with a `reason` naming every broken field.

    Values are judged as JSON requests are (`training.schema.StrictRecord`): a float with no fractional part is
    an integer, a bool or a string is not a number, a number is not a string. `text=True` is for a typeless
    file's cells (CSV, read as text, or as pandas infers types from text): numbers are parsed from their text there.

    The valid part holds exactly the schema's columns, cast to their types; the rejects keep every input column
    as read, plus the reason, so nothing is lost. Both are indexed by row position in the input, so callers can
    join other columns back with `frame.iloc[valid.index]`.
    """
    missing = missing_columns(frame, schema)
    if missing:
        raise DataError(f"missing column(s): {', '.join(missing)}; expected {', '.join(schema['columns'])}")
    frame = frame.reset_index(drop=True)
    typed: dict[str, pd.Series] = {}
    reasons = np.full(len(frame), "", dtype=object)
    for column, spec in schema["columns"].items():
        check = _check_text if spec["type"] == "string" else _check_numeric
        typed[column], problems = check(frame[column], spec, text)
        for problem, mask in problems.items():
            if mask.any():
                reasons[mask] = reasons[mask] + f"{column} {problem}; "
    clean = pd.DataFrame(typed)
    ok = reasons == ""
    for rule, rows in rule_violations(clean[ok], rules_of(schema)):
        positions = np.flatnonzero(ok)[rows]
        reasons[positions] = reasons[positions] + rule.message + " "
    ok = reasons == ""
    integers = {column: "int64" for column, spec in schema["columns"].items() if spec["type"] == "integer"}
    valid = clean[ok].astype(integers)
    rejects = frame[~ok].copy()
    rejects[REASON] = pd.Series(reasons[~ok], index=rejects.index).str.strip().str.rstrip(";")
    return valid, rejects
