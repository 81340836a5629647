"""The Evidently report: a DataDriftPreset run over the two frames, and the results read back from its snapshot.

Evidently is imported inside the functions: importing it takes seconds, and the CLI's error paths should not pay it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd

from monitoring.drift.errors import DriftError

DEFAULT_DRIFT_SHARE = 0.3
# Evidently's per-column threshold when the reference has more than 1,000 rows (normed Wasserstein for numbers,
# Jensen-Shannon for categories); smaller references get p-value tests (threshold 0.05), which are not drawn.
DISTANCE_THRESHOLD = 0.1
DISTANCE_MIN_REFERENCE_ROWS = 1_000


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    *,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    timestamp: datetime | None = None,
):
    """The Evidently snapshot of a DataDriftPreset run (imports Evidently, which takes seconds)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from monitoring.drift.thresholds import COLUMN_SCORE, DATASET_SHARE, DriftThreshold

    # Both lists always: otherwise small-integer columns are inferred categorical and unlisted floats dropped.
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    metrics = [DataDriftPreset(drift_share=drift_share),
               DriftThreshold(applies_to=DATASET_SHARE, threshold=drift_share)]
    if len(reference) > DISTANCE_MIN_REFERENCE_ROWS:
        metrics.append(DriftThreshold(applies_to=COLUMN_SCORE, threshold=DISTANCE_THRESHOLD))
    report = Report(metrics, include_tests=True)  # tests carry the flags
    return report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
        timestamp=timestamp,
    )


def extract(snapshot_dict: dict[str, Any]) -> dict[str, Any]:
    """Dataset drift and per-column results from `snapshot.dict()`."""
    status = {
        t["metric_config"]["metric_id"]: str(getattr(t["status"], "value", t["status"]))
        for t in snapshot_dict.get("tests", [])
    }
    out: dict[str, Any] = {"features": {}}
    for metric in snapshot_dict["metrics"]:
        config = metric["config"]
        if config["type"] == "evidently:metric_v2:DriftedColumnsCount":
            out["drifted_columns"] = int(metric["value"]["count"])
            out["drift_share"] = float(metric["value"]["share"])
            out["drift_share_threshold"] = float(config["drift_share"])
            # Evidently's test is "share < drift_share"; it fails exactly when the share reaches the threshold.
            out["dataset_drift"] = status.get(metric["id"], "") == "FAIL" or out["drift_share"] >= config["drift_share"]
        elif config["type"] == "evidently:metric_v2:ValueDrift":
            score = float(metric["value"])
            out["features"][config["column"]] = {
                "score": score if math.isfinite(score) else None,
                "method": config["method"],
                "threshold": float(config["threshold"]),
                "drifted": status.get(metric["id"]) == "FAIL",
            }
    if "drift_share" not in out:
        raise DriftError("the Evidently report holds no DriftedColumnsCount metric")
    out["columns"] = len(out["features"])
    return out


def verdict(summary: dict[str, Any]) -> str:
    """One line: the dataset drift flag and the share behind it."""
    said = "DATASET DRIFT" if summary["dataset_drift"] else "No dataset drift"
    return (f"{said}: {summary['drifted_columns']} of {summary['columns']} columns drifted "
            f"(share {summary['drift_share']:.3f}, threshold {summary['drift_share_threshold']:g})")


def column_threshold(summary: dict[str, Any]) -> float | None:
    """The one per-column threshold of the run, when every column was judged by a distance against it."""
    thresholds = {f["threshold"] for f in summary["features"].values()}
    if summary["reference_rows"] > DISTANCE_MIN_REFERENCE_ROWS and thresholds == {DISTANCE_THRESHOLD}:
        return DISTANCE_THRESHOLD
    return None
