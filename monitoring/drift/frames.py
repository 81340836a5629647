"""The two data frames Evidently compares: the model's reference sample and the window, typed from the model's
saved input schema, the predicted probability included as a numerical column."""

from __future__ import annotations

from typing import Any

import pandas as pd

from monitoring.drift.errors import DriftError

PREDICTION_COLUMN = "prediction_probability"  # the log's `probability` and the reference's `prediction`


def column_types(schema: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(numerical, categorical) input columns of a saved input schema, in schema order."""
    categorical = [c for c in schema["columns"] if c in set(schema.get("categorical", []))]
    categorical += [c for c, s in schema["columns"].items() if s["type"] == "string" and c not in categorical]
    numerical = [c for c in schema["columns"] if c not in categorical]
    return numerical, categorical


def _typed(frame: pd.DataFrame, numerical: list[str], categorical: list[str], source: str) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for column in numerical:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in categorical:
        values = frame[column]
        out[column] = values.where(values.isna(), values.astype(str)).astype(object)
    empty = [c for c in out.columns if out[c].isna().all()]
    if empty:
        raise DriftError(f"{source}: column(s) {', '.join(empty)} hold no values; cannot measure their drift")
    return out.reset_index(drop=True)


def prepare(
    schema: dict[str, Any], reference: pd.DataFrame, window: pd.DataFrame, *, source: str = "log"
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """Reference and current frames with the same typed columns, the prediction included as a numerical column."""
    numerical, categorical = column_types(schema)
    features = numerical + categorical
    missing = [c for c in [*features, "probability"] if c not in window.columns]
    if missing:
        raise DriftError(f"{source}: logged rows lack column(s) {', '.join(missing)} of the model's input schema")
    missing = [c for c in [*features, "prediction"] if c not in reference.columns]
    if missing:
        raise DriftError(f"the model's reference sample lacks column(s) {', '.join(missing)}")
    reference = reference.rename(columns={"prediction": PREDICTION_COLUMN})
    current = window.rename(columns={"probability": PREDICTION_COLUMN})
    numerical = [*numerical, PREDICTION_COLUMN]
    return (
        _typed(reference, numerical, categorical, "reference sample"),
        _typed(current, numerical, categorical, source),
        numerical,
        categorical,
    )
