"""The quality job's latest results on /metrics: `serving_model_quality{model,version,metric}` (ROC AUC, log loss,
Brier, precision, recall, outcome share, rows with an outcome) and `serving_ab_verdict{endpoint,a,b,metric}` (1: a
is better than b, -1: worse, 0: not yet significant). Read from the state file the job writes
(QUALITY_STATE_PATH), polled like the drift state."""

from __future__ import annotations

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
