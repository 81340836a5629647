"""The scoring job's one per-chunk step, shared by both engines: validate -> predict -> attach the outputs.

The embedded engine calls `score_chunk` on each chunk it reads; the Spark engine calls the same function inside
`mapInPandas` on each Arrow batch, so the two engines cannot disagree about validation, features or thresholds.

Output rows: every input column, plus `probability` (float64), `prediction` (0/1 at the model's threshold),
`model_name` and `model_version`. The model's own input columns are written with the types of the model's input
schema (integer -> int64, number -> float64, string -> string, the value the model scored, trimmed), so a
CSV's text and a Parquet file's int32 come out the same; every other column is carried through as read.
Reject rows: every input column exactly as read, plus `reason` naming each broken field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from monitoring.logbatch import LogBatch, LogContext
from training.store import StoredModel, load_model
from training.validation import REASON, DataError, missing_columns, validate_frame

PROBABILITY, PREDICTION, MODEL_NAME, MODEL_VERSION = "probability", "prediction", "model_name", "model_version"
OUTPUT_COLUMNS = (PROBABILITY, PREDICTION, MODEL_NAME, MODEL_VERSION)
OUTPUT_TYPES: dict[str, pa.DataType] = {
    PROBABILITY: pa.float64(),
    PREDICTION: pa.int64(),
    MODEL_NAME: pa.string(),
    MODEL_VERSION: pa.string(),
}
MODEL_COLUMN_TYPES: dict[str, pa.DataType] = {"integer": pa.int64(), "number": pa.float64(), "string": pa.string()}
ENDPOINT = "scoring"  # the prediction log's `endpoint` for rows written by this job

_MODELS: dict[str, StoredModel] = {}


def cached_model(tag: str) -> StoredModel:
    """The model for an exact `name:version` tag, loaded from the store once per process.

    Spark reuses its Python workers across tasks, so this loads the model once per executor process rather than
    once per partition; the embedded engine's worker processes use it the same way.
    """
    if tag not in _MODELS:
        model = load_model(tag)
        # Also under the exact tag: the engines pass `name:version` on, so a model trained mid-run changes nothing.
        _MODELS[tag] = _MODELS[model.tag] = model
    return _MODELS[tag]


def check_columns(columns: list[str], model_schema: dict[str, Any]) -> None:
    """File-level checks, before any row is read: the model's columns are there and ours are not taken."""
    missing = [column for column in model_schema["columns"] if column not in columns]
    if missing:
        raise DataError(f"missing column(s): {', '.join(missing)}; the model needs {', '.join(model_schema['columns'])}")
    taken = [column for column in (*OUTPUT_COLUMNS, REASON) if column in columns]
    if taken:
        raise DataError(
            f"the input already has column(s) {', '.join(taken)}, which the job writes: rename or drop them"
        )


def output_schema(input_schema: pa.Schema, model_schema: dict[str, Any]) -> pa.Schema:
    """The scored file's columns: the input's, with the model's columns typed by its schema, then the outputs."""
    columns = model_schema["columns"]
    fields = [
        pa.field(field.name, MODEL_COLUMN_TYPES[columns[field.name]["type"]]) if field.name in columns else field
        for field in input_schema
    ]
    return pa.schema([*fields, *(pa.field(name, kind) for name, kind in OUTPUT_TYPES.items())])


def rejects_schema(input_schema: pa.Schema) -> pa.Schema:
    return pa.schema([*input_schema, pa.field(REASON, pa.string())])


def rejects_path(output: Path) -> Path:
    """`day.parquet` -> `day.rejects.parquet`, beside the output (a folder for Spark, a file otherwise)."""
    suffix = output.suffix if output.suffix.lower() in {".parquet", ".pq"} else ""
    return output.with_name(f"{output.name[: len(output.name) - len(suffix)]}.rejects{suffix or '.parquet'}")


@dataclass
class ScoredChunk:
    scored: pd.DataFrame  # output rows, in input order
    rejects: pd.DataFrame  # rejected rows as read, with `reason`
    inputs: pd.DataFrame  # the model's typed input columns of the scored rows (what the prediction log records)

    @property
    def positives(self) -> int:
        return int(self.scored[PREDICTION].sum())


def score_chunk(frame: pd.DataFrame, model: StoredModel, *, text: bool = False) -> ScoredChunk:
    """Validate one chunk, score its valid rows and attach the outputs; rejects keep their reasons.

    `text`: the chunk holds a CSV's cells as text, whose numbers are parsed (see `validate_frame`)."""
    if missing_columns(frame, model.input_schema):
        # A chunk can only lack columns the file lacks; check_columns reports that better, before the job starts.
        check_columns(list(frame.columns), model.input_schema)
    valid, rejects = validate_frame(frame, model.input_schema, text=text)
    probability = model.predict_proba(valid).astype(np.float64, copy=False)
    scored = frame.iloc[valid.index.to_numpy()].reset_index(drop=True)
    for column in valid.columns:
        scored[column] = valid[column].to_numpy()
    scored[PROBABILITY] = probability
    scored[PREDICTION] = model.classify(probability)
    scored[MODEL_NAME] = model.name
    scored[MODEL_VERSION] = model.version
    return ScoredChunk(scored=scored, rejects=rejects.reset_index(drop=True), inputs=valid.reset_index(drop=True))


def rejected_rows(frame: pd.DataFrame, model_schema: dict[str, Any], *, text: bool = False) -> pd.DataFrame:
    """Only the rejects of a chunk, as `score_chunk` would give them: for an engine that writes them separately."""
    return validate_frame(frame, model_schema, text=text)[1].reset_index(drop=True)


def log_batch(inputs: pd.DataFrame, probability: Any, prediction: Any, *, model: StoredModel, request_id: str) -> LogBatch:
    """Scored rows for the prediction log (endpoint `scoring`), so the drift job can read a day's batch like served
    traffic."""
    return LogBatch(
        inputs,
        np.asarray(probability),
        np.asarray(prediction),
        LogContext(endpoint=ENDPOINT, model_name=model.name, model_version=model.version, request_id=request_id),
    )
