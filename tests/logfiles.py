"""Prediction logs for tests: batches written by the real writer, what a killed writer leaves, and the JSON-lines
format older versions wrote (logs on disk in that format must still be read by every reader)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from monitoring.ipc import END_OF_STREAM
from monitoring.logbatch import LogBatch, LogContext, encode
from monitoring.segments import family, is_stream


def batch(inputs: pd.DataFrame, proba, classes, *, request_id: str | list[str] = "r", model_name: str = "m",
          model_version: str = "v1", endpoint: str = "/batch_predict", ts: datetime | None = None,
          ids: list[str] | None = None, **context) -> LogBatch:
    return LogBatch(inputs, np.asarray(proba), np.asarray(classes), ids=ids, context=LogContext(
        endpoint=endpoint, model_name=model_name, model_version=model_version, request_id=request_id,
        **({"ts": ts} if ts is not None else {}), **context))


def tear(log: Path) -> Path:
    """Make the newest Arrow segment of `log` look like its writer was SIGKILLed in the middle of a batch: no
    end-of-stream marker, and half a record-batch message at its end. Returns the segment."""
    segment = [p for p in family(log) if is_stream(p)][-1]
    data = segment.read_bytes()
    if data.endswith(END_OF_STREAM):
        data = data[: -len(END_OF_STREAM)]
    frame = pd.DataFrame({"student_country": ["torn"] * 8, "days_on_platform": range(8)})
    half = encode(batch(frame, np.zeros(8), np.zeros(8, dtype=int))).serialize().to_pybytes()
    segment.write_bytes(data + half[: len(half) // 2])
    return segment


# ------------------------------------------------------------------------ the JSON-lines format of older versions


def to_lines(inputs: pd.DataFrame, probability, prediction, *, request_id: str | list[str], endpoint: str,
             model_name: str, model_version: str, routing_key=None, variant=None, ts: str | None = None,
             alias=None, shadow: bool = False, per_row: dict[str, list] | None = None) -> bytes:
    """One JSON object per line and prediction, as the writer wrote them before it wrote Arrow segments."""
    shared = {"ts": ts or datetime.now(timezone.utc).isoformat(timespec="microseconds"), "endpoint": endpoint,
              "model_name": model_name, "model_version": model_version, "variant": variant, "alias": alias,
              "shadow": shadow}
    columns: list[str] = []
    values: list[list] = []
    for key, value in (("request_id", request_id), ("routing_key", routing_key), *(per_row or {}).items()):
        if isinstance(value, list):
            columns.append(key)
            values.append(value)
        else:
            shared[key] = value
    columns += [*inputs.columns, "probability", "prediction"]
    values += [inputs[c].tolist() for c in inputs.columns]
    values += [np.asarray(probability, dtype=np.float64).tolist(), np.asarray(prediction, dtype=np.int64).tolist()]
    prefix = orjson.dumps(shared)[:-1] + b","
    lines = [prefix + orjson.dumps(dict(zip(columns, row)))[1:] for row in zip(*values)]
    return b"\n".join(lines) + b"\n" if lines else b""
