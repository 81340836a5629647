"""The quality job's latest results on /metrics: `serving_model_quality{model,version,metric}` (ROC AUC, log loss,
Brier, precision, recall, outcome share, rows with an outcome) and `serving_ab_verdict{endpoint,a,b,metric}` (1: a
is better than b, -1: worse, 0: not yet significant). Read from the state file the job writes
(QUALITY_STATE_PATH), polled like the drift state.

The label-free estimates (monitoring/quality/window_estimates.py), per model version over the job's window:
`serving_model_quality_estimate{model,version,metric}` (roc_auc, precision, recall, accuracy),
`serving_model_quality_estimate_standard_error{model,version,metric}`, `serving_model_quality_estimate_rows{model,
version}` and `serving_model_quality_estimation_error{model,version,metric}` (the estimate minus the realized metric on
the rows with an outcome). A value the job could not compute (no outcome yet, no predicted positive) is NaN, never
the previous run's value."""

from __future__ import annotations

import math

from prometheus_client import Gauge

from serving.core.metrics import DriftGauges

MODEL_QUALITY = Gauge(
    "serving_model_quality", "Quality on true outcomes in the last quality job", ["model", "version", "metric"],
    multiprocess_mode="mostrecent",
)
AB_VERDICT = Gauge(
    "serving_ab_verdict", "Last A/B verdict of variant a against b: 1 better, -1 worse, 0 not yet significant",
    ["endpoint", "a", "b", "metric"], multiprocess_mode="mostrecent",
)
ESTIMATE = Gauge(
    "serving_model_quality_estimate", "Quality estimated without outcomes (CBPE) over the last quality job's window",
    ["model", "version", "metric"], multiprocess_mode="mostrecent",
)
ESTIMATE_SE = Gauge(
    "serving_model_quality_estimate_standard_error", "Standard error of serving_model_quality_estimate",
    ["model", "version", "metric"], multiprocess_mode="mostrecent",
)
ESTIMATE_ROWS = Gauge(
    "serving_model_quality_estimate_rows", "Predictions behind serving_model_quality_estimate",
    ["model", "version"], multiprocess_mode="mostrecent",
)
ESTIMATION_ERROR = Gauge(
    "serving_model_quality_estimation_error",
    "Estimate minus realized metric on the predictions that have an outcome (NaN: none yet)",
    ["model", "version", "metric"], multiprocess_mode="mostrecent",
)


def _value(value) -> float:
    return math.nan if value is None else float(value)


class QualityGauges(DriftGauges):
    """DriftGauges' polling of a state file, applied to the quality job's state (one entry per task)."""

    def apply(self, state: dict) -> None:
        for entry in state.values():
            for model in entry.get("models", []):
                for metric, value in model.get("metrics", {}).items():
                    if value is not None:
                        MODEL_QUALITY.labels(model["model"], model["version"], metric).set(float(value))
            for verdict in entry.get("ab", []):
                AB_VERDICT.labels(verdict["endpoint"], verdict["a"], verdict["b"], verdict["metric"]).set(
                    float(verdict["code"]))
            for estimate in entry.get("estimates", []):  # absent in states written before the estimates
                labels = (estimate["model"], estimate["version"])
                ESTIMATE_ROWS.labels(*labels).set(float(estimate["rows"]))
                for metric, value in estimate["metrics"].items():
                    ESTIMATE.labels(*labels, metric).set(_value(value))
                    ESTIMATE_SE.labels(*labels, metric).set(_value(estimate["standard_errors"].get(metric)))
                    ESTIMATION_ERROR.labels(*labels, metric).set(_value(estimate["estimation_errors"].get(metric)))
