"""Apache Arrow bodies: an IPC stream in (one column per model input), an IPC stream out.

Decoding stops at columns: `serving.codecs.columns.validate_columns` turns them into the model's input frame with the
same rules as every other door. Encoding writes the prediction columns, with the model's name and version in
the stream's schema metadata. The endpoints (`/batch_predict`, the V2 infer routes) only call these functions
and answer the errors in their own shape (422 `{"detail": ...}` on /batch_predict, 400 `{"error": ...}` on V2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from serving.codecs.columns import ColumnsInvalid, validate_columns
from serving.codecs.errors import CodecError
from serving.codecs.media import ARROW_STREAM, media_type_of
from serving.codecs.records import RecordsValidator

BATCH_COLUMNS = ("predicted_purchase_probability", "predicted_purchase")  # /batch_predict's answer, as in JSON
V2_COLUMNS = ("predict_proba", "predicted_class")  # the V2 outputs
REQUEST_DOC = {ARROW_STREAM: {"schema": {"type": "string", "format": "binary", "description": "An Arrow IPC stream, "
                                         "one column per model input; rows over MAX_RECORDS are refused."}}}
BATCH_RESPONSE_DOC = {ARROW_STREAM: {"schema": {"type": "string", "format": "binary", "description": "With `Accept: "
                      f"{ARROW_STREAM}`: columns {', '.join(BATCH_COLUMNS)}; model_name and model_version in the "
                      "schema metadata."}}}


class ArrowBodyInvalid(ValueError):
    """The body is not a usable Arrow IPC stream, or holds too many rows."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def is_arrow(content_type: str | None) -> bool:
    return media_type_of(content_type, "") == ARROW_STREAM


def wants_arrow(accept: str | None) -> bool:
    """True when the client's Accept header names the Arrow stream type (q-values are not weighed)."""
    return any(media_type_of(part, "") == ARROW_STREAM for part in (accept or "").split(","))


def read_columns(body: bytes, max_rows: int) -> dict[str, pa.ChunkedArray]:
    """The columns of an Arrow IPC stream body, by name. Raises ArrowBodyInvalid."""
    try:
        table = pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise ArrowBodyInvalid(f"The body is not an Arrow IPC stream ({ARROW_STREAM}): {exc}", "arrow_invalid") from None
    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ArrowBodyInvalid(f"Column(s) sent more than once: {', '.join(repeated)}.", "duplicate_column")
    if table.num_rows > max_rows:
        raise ArrowBodyInvalid(
            f"{table.num_rows} rows is over the limit of {max_rows} (MAX_RECORDS); send them in several requests.",
            "too_many_records",
        )
    return {name: table.column(name) for name in names}


def read_frame(body: bytes, schema: dict[str, Any], max_rows: int) -> pd.DataFrame:
    """An Arrow body -> the validated input frame. Raises ArrowBodyInvalid or ColumnsInvalid."""
    return validate_columns(read_columns(body, max_rows), schema)


def write_stream(columns: dict[str, np.ndarray], metadata: dict[str, str | None] | None = None) -> bytes:
    """Columns -> one Arrow IPC stream (a single record batch), with optional string metadata on the schema."""
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata({k: v for k, v in metadata.items() if v is not None})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def predictions_stream(
    names: tuple[str, str], proba: np.ndarray, classes: np.ndarray, model_name: str, model_version: str | None,
    prediction_ids: list[str] | None = None,
) -> bytes:
    """The probability (float64) and class (int64) columns under `names` (and each row's `prediction_id`), tagged
    with the model that made them."""
    columns = {names[0]: np.asarray(proba, dtype=np.float64), names[1]: np.asarray(classes, dtype=np.int64)}
    if prediction_ids is not None:
        columns["prediction_id"] = pa.array(prediction_ids, type=pa.string())
    return write_stream(columns, {"model_name": model_name, "model_version": model_version})



# /batch_predict's Arrow door: its errors are the seed's 422 `{"detail": "..."}`, naming the column and rows.
def batch_request(body: bytes, validator: RecordsValidator) -> pd.DataFrame:
    try:
        return read_frame(body, validator.schema, validator.max_records)
    except ArrowBodyInvalid as exc:
        raise CodecError(str(exc), exc.reason) from None
    except ColumnsInvalid as exc:
        raise CodecError(exc.message(), exc.kind) from None
