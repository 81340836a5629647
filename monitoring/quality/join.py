"""Predictions joined to their outcomes by prediction_id: both read through the one log reader
(monitoring/logreader.py), so rotated, compacted and live segments all count and torn lines are skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.logreader import LogMissing, LogReader, to_frame
from monitoring.quality.errors import QualityError

PREDICTION_COLUMNS = ["ts", "prediction_id", "endpoint", "model_name", "model_version", "alias", "variant",
                      "shadow", "probability", "prediction"]
OUTCOME_COLUMNS = ["ts", "prediction_id", "outcome"]
UNMATCHED_SHOWN = 20


@dataclass
class Joined:
    predictions: pd.DataFrame  # the window's predictions that carry an id, with `outcome` (NaN when none yet)
    outcomes: int  # distinct ids with an outcome
    unmatched: int  # outcomes whose id is not among the window's predictions
    unmatched_examples: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    without_id: int = 0  # predictions logged before ids existed


def read_outcomes(path: Path | str) -> tuple[pd.DataFrame, int]:
    """Each id's latest outcome (the store appends in ingestion order), and the lines skipped; none yet (no store,
    or an empty one) is no error: the job then estimates quality without outcomes."""
    none_yet = pd.DataFrame({"outcome": pd.Series(dtype=np.float64)}, index=pd.Index([], name="prediction_id"))
    try:
        reader = LogReader(path)
    except LogMissing:
        return none_yet, 0
    table = reader.table(OUTCOME_COLUMNS)
    if not table.num_rows or "prediction_id" not in table.column_names:
        return none_yet, reader.skipped
    frame = table.select(["prediction_id", "outcome"]).to_pandas()
    frame = frame.drop_duplicates("prediction_id", keep="last")
    return frame.set_index("prediction_id"), reader.skipped


def read_predictions(path: Path | str, since: datetime | None) -> tuple[pd.DataFrame, int]:
    try:
        reader = LogReader(path)
    except LogMissing:
        raise QualityError(f"no prediction log at {path}") from None
    frame = to_frame(reader.table(PREDICTION_COLUMNS, since=since))
    for column in PREDICTION_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    return frame, reader.skipped


def join(log: Path | str, outcome_store: Path | str, since: datetime | None) -> Joined:
    outcomes, skipped_outcomes = read_outcomes(outcome_store)
    predictions, skipped = read_predictions(log, since)
    # Shadow predictions (issue 12) never reached a client, so no outcome names them: they are not a variant here.
    predictions = predictions[~predictions["shadow"].eq(True).fillna(False).astype(bool)]
    with_id = predictions["prediction_id"].notna()
    without_id = int((~with_id).sum())
    predictions = predictions[with_id].drop_duplicates("prediction_id", keep="last").reset_index(drop=True)
    predictions["outcome"] = predictions["prediction_id"].map(outcomes["outcome"])
    matched = outcomes.index.isin(predictions["prediction_id"])
    unmatched_ids = outcomes.index[~matched]
    return Joined(
        predictions=predictions,
        outcomes=len(outcomes),
        unmatched=len(unmatched_ids),
        unmatched_examples=[str(i) for i in unmatched_ids[:UNMATCHED_SHOWN]],
        skipped_lines=skipped + skipped_outcomes,
        without_id=without_id,
    )
