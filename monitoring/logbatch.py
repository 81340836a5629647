"""What the prediction log records for one scored batch, and its columnar encoding (an Arrow record batch).

A `LogBatch` is the typed hand-off from whoever scored a batch (serving/core/predictor.py, the scoring job) to the log:
the inputs frame, the model's outputs, the prediction ids and the context the batch shares (`LogContext`). The log
encodes it once, column by column, into one Arrow record batch: no value is formatted as text, and the columns
reach Parquet later without being parsed again (monitoring/compaction.py).

Columns, in order (docs/prediction-log.md):
    ts, request_id, endpoint, model_name, model_version, routing_key, variant, alias, shadow, prediction_id,
    <per-row keys such as serial_number>, <every input column of the model>, probability, prediction
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

META_COLUMNS = ("ts", "request_id", "endpoint", "model_name", "model_version", "routing_key", "variant", "alias", "shadow",
                "prediction_id", "serial_number")
OUTPUT_COLUMNS = ("probability", "prediction")
RESERVED = frozenset(META_COLUMNS + OUTPUT_COLUMNS)
TS = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def now() -> datetime:
    return datetime.now(timezone.utc)


def now_iso() -> str:
    return now().isoformat(timespec="microseconds")


@dataclass(frozen=True)
class LogContext:
    """What every row of a batch shares, except `request_id` and `routing_key`, which may be one per row (an
    adaptive batch mixes requests), and `row_keys` (per-row fields such as a bound row's `serial_number`)."""

    endpoint: str
    model_name: str
    model_version: str
    request_id: str | list[str]
    routing_key: str | None | list[str | None] = None
    variant: str | None = None
    alias: str | None = None  # the stage alias (task@stage) the request named, if any
    shadow: bool = False  # a shadow model's prediction for the primary's record, never sent to the client
    ts: datetime = field(default_factory=now)  # the prediction's time, even when a background thread writes it
    row_keys: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class LogBatch:
    """One scored batch: what the log writes, one row per input row."""

    inputs: pd.DataFrame
    proba: np.ndarray
    classes: np.ndarray
    context: LogContext
    ids: list[str] | None = None  # one prediction_id per row (serving/core/ids.py); None where rows have none
    shared_inputs: bool = False  # other batches have this same inputs frame (/v1/predict): convert it once

    def __len__(self) -> int:
        return len(self.inputs)


def input_columns(inputs: pd.DataFrame) -> list[pa.Array]:
    """The inputs' columns in the log's types. Raises ValueError when an input column is named like a log field."""
    clashing = RESERVED.intersection(inputs.columns)
    if clashing:
        raise ValueError(f"input columns {sorted(clashing)} clash with the log's own fields")
    return [_column(inputs[column]) for column in inputs.columns]


def encode(batch: LogBatch, inputs: list[pa.Array] | None = None) -> pa.RecordBatch:
    """The batch as one Arrow record batch (`inputs`: `input_columns(batch.inputs)` when the caller has them)."""
    if inputs is None:
        inputs = input_columns(batch.inputs)
    rows = len(batch.inputs)
    context = batch.context
    ts = context.ts if context.ts.tzinfo else context.ts.replace(tzinfo=timezone.utc)  # naive times are UTC
    stamp = (ts - _EPOCH) // _MICROSECOND
    names = ["ts", "request_id", "endpoint", "model_name", "model_version", "routing_key", "variant", "alias", "shadow",
             "prediction_id"]
    arrays = [
        pa.array(np.full(rows, stamp, dtype=np.int64)).view(TS),
        _text(context.request_id, rows),
        _text(context.endpoint, rows),
        _text(context.model_name, rows),
        _text(context.model_version, rows),
        _text(context.routing_key, rows),
        _text(context.variant, rows),
        _text(context.alias, rows),
        pa.array(np.full(rows, context.shadow, dtype=bool)),
        _text(batch.ids, rows),
    ]
    for key, values in context.row_keys.items():
        names.append(key)
        arrays.append(pa.array(values))
    names += list(batch.inputs.columns)
    arrays += inputs
    names += ["probability", "prediction"]
    arrays += [pa.array(np.asarray(batch.proba, dtype=np.float64)), pa.array(np.asarray(batch.classes, dtype=np.int64))]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _text(value: str | None | list, rows: int) -> pa.Array:
    """A string column: one value per row, or one value repeated (built from buffers: no Python object per row)."""
    if isinstance(value, list):
        return pa.array(value, pa.string())
    if value is None:
        return pa.nulls(rows, pa.string())
    data = value.encode()
    offsets = np.arange(rows + 1, dtype=np.int32) * len(data)
    return pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data * rows)])


def _column(series: pd.Series) -> pa.Array:
    """An input column with the log's types: 64-bit integers and floats, plain strings (as the scoring job and the
    readers type a model's inputs), so one model's rows keep one schema whatever door they came through."""
    values = series.to_numpy()
    if values.dtype == np.int64 or values.dtype == np.float64:
        return pa.array(values)  # the validated doors' columns: no null to find, nothing to cast
    array = pa.array(values, from_pandas=True)
    kind = array.type
    if pa.types.is_integer(kind):
        return array.cast(pa.int64())
    if pa.types.is_floating(kind):
        return array.cast(pa.float64())
    if pa.types.is_dictionary(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return array.cast(pa.string())
    return array
