"""The one vectorized validator for typed columns: V2 tensors, Arrow tables and JSON batches sent as columns.

It takes one array per column (NumPy, pyarrow, pandas, or a plain list from a JSON decoder) and a model's saved
input schema (`training.schema.input_schema`) and returns the validated input DataFrame, or raises
`ColumnsInvalid` listing every problem with its column and its first offending row positions (0-based).

The rules are the record models' (`training/schema.py`), applied to whole columns at once: strings are never
numbers and bools are never numbers; an integer column takes integers, and floats without a fractional part
(12.0, not 12.5); a number column takes integers and floats; NaN, infinity, nulls and empty strings are refused;
strings are stripped of surrounding whitespace, as the record models do; bounds and the cross-field rules hold.
Nothing else is coerced. Every column is first turned into a pyarrow array (strictly, see `_to_arrow`), so the
checks below are written once for all the ways a column can arrive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from training.schema import rules_of
from training.validation import rule_violations

MAX_NAMED_ROWS = 20  # row positions named per problem; the count says how many there are in all
_EXPECTED = {"string": "strings", "integer": "integers", "number": "numbers"}
_ALLOWED_PY = {"string": (str,), "integer": (int, float), "number": (int, float)}


@dataclass(frozen=True)
class ColumnProblem:
    """One thing wrong with one column: what, how many rows, and the first of them."""

    column: str
    kind: str  # a short label for metrics: missing_column, type, null, not_finite, not_integer, bounds, ...
    problem: str
    rows: tuple[int, ...] = ()  # the first offending positions (at most MAX_NAMED_ROWS); empty for whole columns
    count: int = 0  # how many rows are affected in all

    def describe(self, what: str = "column", where: str = "rows") -> str:
        # A rule's message names its own columns (and is the seed's 422 text); other problems name the column.
        text = self.problem.rstrip(".") if self.kind == "rule" else f"{what} {self.column!r} {self.problem}"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows)
            more = f" and {self.count - len(self.rows)} more" if self.count > len(self.rows) else ""
            text += f" (offending {where}, 0-based: {shown}{more})"
        return text


class ColumnsInvalid(ValueError):
    """The columns cannot be scored as sent; `problems` lists every problem found, in schema column order."""

    def __init__(self, problems: list[ColumnProblem]):
        self.problems = problems
        super().__init__(self.message())

    def message(self, what: str = "column", where: str = "rows") -> str:
        return "; ".join(p.describe(what, where) for p in self.problems) + "."

    @property
    def kind(self) -> str:
        return self.problems[0].kind


def _problem(column: str, kind: str, problem: str, mask: np.ndarray) -> ColumnProblem | None:
    rows = np.flatnonzero(mask)
    if not rows.size:
        return None
    return ColumnProblem(column, kind, problem, tuple(int(r) for r in rows[:MAX_NAMED_ROWS]), int(rows.size))


def _whole(column: str, kind: str, problem: str, rows: int) -> ColumnProblem:
    return ColumnProblem(column, kind, problem, tuple(range(min(rows, MAX_NAMED_ROWS))), rows)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _from_python(column: str, values: Sequence[Any], spec: dict[str, Any]) -> tuple[pa.Array | None, ColumnProblem | None]:
    """A list of Python values (a JSON decoder's output): check every value's exact type, then convert.

    pyarrow's own inference is not strict enough here (it reads [1.5, True] as [1.5, 1.0]); `type(v)` is exact,
    so a bool is never taken for an int, and the scan is one C-level pass when all types are right.
    """
    allowed = _ALLOWED_PY[spec["type"]]
    types = set(map(type, values))
    types.discard(type(None))
    if not types <= set(allowed):
        bad = np.fromiter((v is not None and type(v) not in allowed for v in values), dtype=bool, count=len(values))
        got = sorted({_type_name(v) for v, b in zip(values, bad) if b})
        return None, _problem(column, "type", f"must hold {_EXPECTED[spec['type']]}, got {', '.join(got)}", bad)
    if spec["type"] == "string":
        return pa.array(values, type=pa.string()), None
    target = pa.int64() if types == {int} else pa.float64()
    try:
        return pa.array(values, type=target), None
    except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    # pyarrow refused a value: name each one it refuses on its own. An int column refuses integers outside int64;
    # a float column (ints mixed with floats) refuses integers beyond +-2**53, which a double cannot hold exactly.
    refused = np.fromiter((_refused(v, target) for v in values), dtype=bool, count=len(values))
    problem = "is out of the 64-bit integer range" if target == pa.int64() else (
        "holds an integer beyond +-2**53 among floats, which a 64-bit float cannot hold exactly")
    # Never (None, None): if no single value is refused, the column as a whole is (it cannot be scored either way).
    return None, _problem(column, "bounds", problem, refused) or _whole(column, "type", f"could not be read as "
                                                                        f"{_EXPECTED[spec['type']]}", len(values))


def _refused(value: Any, target: pa.DataType) -> bool:
    try:
        pa.array([value], type=target)
    except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
        return True
    return False


def _to_arrow(column: str, values: Any, spec: dict[str, Any]) -> tuple[pa.Array | None, ColumnProblem | None]:
    """Any supported column container -> one pyarrow array, without converting between kinds of value."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pd.Series):
        values = values.to_numpy() if values.dtype == object else pa.Array.from_pandas(values)
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            values = values.reshape(-1) if values.ndim == 2 and values.shape[1] == 1 else values
        if values.ndim != 1:
            return None, ColumnProblem(column, "shape", f"must be one value per row, got shape {list(values.shape)}")
        if values.dtype == object:
            return _from_python(column, values.tolist(), spec)
        values = pa.array(values)  # numeric and bool arrays: zero copy; NaN stays NaN (not null)
    if isinstance(values, pa.Array):
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        return values, None
    if isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
        return _from_python(column, values, spec)
    return None, ColumnProblem(column, "type", f"must be an array of values, got {type(values).__name__}")


def _kind_of(array: pa.Array) -> str:
    t = array.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_null(t):
        return "null"
    return str(t)


Found = list[tuple[str, str, np.ndarray]]  # (kind, problem, mask of offending rows)
_BOUNDS = (
    ("minimum", np.less, ">="),
    ("exclusiveMinimum", np.less_equal, ">"),
    ("maximum", np.greater, "<="),
    ("exclusiveMaximum", np.greater_equal, "<"),
)


def _nulls(array: pa.Array) -> tuple[np.ndarray, Found]:
    if not array.null_count:
        return np.zeros(len(array), dtype=bool), []
    mask = array.is_null().to_numpy(zero_copy_only=False)
    return mask, [("null", "is missing (null)", mask)]


def _check_string(array: pa.Array, spec: dict[str, Any]) -> tuple[np.ndarray, Found]:
    null, found = _nulls(array)
    trimmed = pc.utf8_trim_whitespace(array)
    lengths = pc.utf8_length(trimmed).fill_null(0).to_numpy(zero_copy_only=False)
    minimum = spec.get("minLength", 1)  # the record models refuse empty strings even without a minLength
    found.append(("empty", "is an empty string" if minimum == 1 else f"is shorter than {minimum} characters",
                  ~null & (lengths < minimum)))
    if "maxLength" in spec:
        found.append(("length", f"is longer than {spec['maxLength']} characters", lengths > spec["maxLength"]))
    return trimmed.to_numpy(zero_copy_only=False), found


def _check_number(array: pa.Array, spec: dict[str, Any]) -> tuple[np.ndarray, Found]:
    null, found = _nulls(array)
    is_float = _kind_of(array) == "float"
    if array.null_count:
        array = array.fill_null(0)
    values = array.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f" and values.itemsize < 8:
        values = values.astype(np.float64)  # float16/32 compared with 1e9 or 2**63 would overflow to inf
    ok = ~null
    if is_float:
        finite = np.isfinite(values)
        found.append(("not_finite", "is NaN or infinite", ok & ~finite))
        ok = ok & finite
        if spec["type"] == "integer":
            with np.errstate(invalid="ignore"):
                found.append(("not_integer", "must be an integer (has a fractional part)", ok & (np.floor(values) != values)))
    with np.errstate(invalid="ignore"):
        if spec["type"] == "integer" and values.dtype.kind in "uf":
            # astype(int64) would wrap uint64 past 2**63 - 1 and turn floats past int64 into garbage, silently
            fits = values <= np.iinfo(np.int64).max if values.dtype.kind == "u" else (
                (values >= -(2.0**63)) & (values < 2.0**63))
            found.append(("bounds", "is out of the 64-bit integer range", ok & ~fits))
            ok = ok & fits
        for key, breaks, op in _BOUNDS:
            if key in spec:
                found.append(("bounds", f"must be {op} {spec[key]}", ok & breaks(values, spec[key])))
        if spec["type"] == "integer":
            return values.astype(np.int64), found
    return values.astype(np.float64, copy=False), found


def validate_columns(columns: Mapping[str, Any], schema: dict[str, Any]) -> pd.DataFrame:
    """Validate one array per input column against `schema`; returns the model's input frame in schema order.

    Raises ColumnsInvalid listing every problem: missing or unexpected columns, columns of unequal length,
    wrong types, nulls, NaN/infinity, fractional integers, empty or over-long strings, bounds and rules.
    """
    specs: dict[str, dict[str, Any]] = schema["columns"]
    problems: list[ColumnProblem] = []
    for name in specs:
        if name not in columns:
            problems.append(ColumnProblem(name, "missing_column", "is missing; expected columns: " + ", ".join(specs)))
    for name in columns:
        if name not in specs:
            problems.append(ColumnProblem(name, "unexpected_column", "is not an input of this model; expected "
                                          "columns: " + ", ".join(specs)))
    arrays: dict[str, pa.Array] = {}
    for name, spec in specs.items():
        if name not in columns:
            continue
        array, problem = _to_arrow(name, columns[name], spec)
        if problem is not None:
            problems.append(problem)
        else:
            arrays[name] = array
    lengths = {name: len(array) for name, array in arrays.items()}
    rows = max(lengths.values(), default=0)
    uneven = [ColumnProblem(n, "rows", f"has {k} rows; the longest column has {rows}") for n, k in lengths.items() if k != rows]
    if uneven:  # row positions mean nothing until the columns agree
        raise ColumnsInvalid(problems + uneven)
    if rows == 0 and not problems:
        raise ColumnsInvalid([ColumnProblem("*", "empty", "no rows were sent; at least 1 is required")])

    typed: dict[str, np.ndarray] = {}
    bad_rows = np.zeros(rows, dtype=bool)
    for name, spec in specs.items():
        if name not in arrays:
            continue
        array = arrays[name]
        kind = _kind_of(array)
        wanted = spec["type"]
        if kind == "null":  # every value is null
            problems.append(_whole(name, "null", "is missing (null)", rows))
            continue
        if (wanted == "string") != (kind == "string") or kind not in ("string", "integer", "float"):
            problems.append(_whole(name, "type", f"must hold {_EXPECTED[wanted]}, got {kind} values", rows))
            continue
        check = _check_string if wanted == "string" else _check_number
        typed[name], found = check(array, spec)
        for kind_, text, mask in found:
            problem = _problem(name, kind_, text, mask)
            if problem is not None:
                problems.append(problem)
                bad_rows |= mask  # the rules below only look at rows whose own values are valid
    for rule in rules_of(schema):
        if rule.left not in typed or rule.right not in typed:
            continue
        ok = np.flatnonzero(~bad_rows)
        pair = pd.DataFrame({rule.left: typed[rule.left][ok], rule.right: typed[rule.right][ok]}, copy=False)
        for broken, positions in rule_violations(pair, [rule]):
            found = ok[positions]
            problems.append(ColumnProblem(rule.left, "rule", broken.message,
                                          tuple(int(r) for r in found[:MAX_NAMED_ROWS]), int(found.size)))
    if problems:
        raise ColumnsInvalid(problems)
    return pd.DataFrame(typed, columns=list(specs), copy=False)
