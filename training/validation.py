"""Vectorized validation of whole DataFrames against a saved input schema.

Files (training CSVs, the daily scoring job) are validated here column by column with NumPy, never row by row:
a million rows take well under a second. JSON requests are validated by pydantic-core instead (see
`serving/validation.py`), which gives FastAPI's error shape; both read bounds from the same schema and share the
cross-field rule check below.
"""

from __future__ import annotations

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


def _check_numeric(values: pd.Series, spec: dict[str, Any]) -> tuple[pd.Series, dict[str, np.ndarray]]:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    problems: dict[str, np.ndarray] = {}
    absent = values.isna().to_numpy()
    problems["is missing"] = absent
    problems["is not a number"] = numbers.isna().to_numpy() & ~absent
    finite = np.isfinite(numbers.to_numpy())
    problems["is not finite"] = ~finite & ~numbers.isna().to_numpy()
    arr = numbers.to_numpy()
    with np.errstate(invalid="ignore"):
        if spec["type"] == "integer":
            problems["is not an integer"] = finite & (np.floor(arr) != arr)
        if "minimum" in spec:
            problems[f"must be >= {spec['minimum']}"] = finite & (arr < spec["minimum"])
        if "exclusiveMinimum" in spec:
            problems[f"must be > {spec['exclusiveMinimum']}"] = finite & (arr <= spec["exclusiveMinimum"])
        if "maximum" in spec:
            problems[f"must be <= {spec['maximum']}"] = finite & (arr > spec["maximum"])
    return numbers, problems


def _check_text(values: pd.Series, spec: dict[str, Any]) -> tuple[pd.Series, dict[str, np.ndarray]]:
    absent = values.isna().to_numpy()
    text = values.astype("string").str.strip()
    lengths = text.str.len().fillna(0).to_numpy()
    problems = {
        "is missing": absent,
        f"must have at least {spec.get('minLength', 1)} character(s)": ~absent & (lengths < spec.get("minLength", 1)),
    }
    if "maxLength" in spec:
        problems[f"must have at most {spec['maxLength']} characters"] = lengths > spec["maxLength"]
    return text.astype(object), problems


def validate_frame(frame: pd.DataFrame, schema: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame into typed valid rows and rejected rows with a `reason` naming every broken field.

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
        typed[column], problems = check(frame[column], spec)
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
