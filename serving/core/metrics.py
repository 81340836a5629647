"""Prometheus metrics of the service, beside BentoML's own on /metrics.

Written with prometheus_client directly (bentoml.metrics is deprecated); BentoML runs workers in multiprocess
mode and merges every worker's values on /metrics. Label sets are bounded: models, versions, classes, endpoints,
deciles and at most TOP_CATEGORIES values per categorical feature.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter as Tally
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client import Counter, Gauge, Histogram

from serving.seam import observe_many
from training.store import StoredModel

logger = logging.getLogger(__name__)

TOP_CATEGORIES = 20
OTHER = "__other__"
PROBABILITY_BUCKETS = tuple(round(x, 2) for x in np.linspace(0.05, 1.0, 20))
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)

PREDICTIONS = Counter(
    "serving_predictions", "Predictions made", ["model", "version", "endpoint", "predicted_class"]
)
# Per version as well as per model: a rollout compares two versions of one model (training/rollout/gates.py).
PROBABILITY = Histogram(
    "serving_prediction_probability", "Predicted probability of the positive class", ["model", "version"],
    buckets=PROBABILITY_BUCKETS,
)
BATCH_ROWS = Histogram("serving_batch_rows", "Records per request (or per adaptive batch)", ["endpoint"], buckets=ROW_BUCKETS)
INFERENCE = Histogram(
    "serving_inference_seconds",
    "Features and model call per batch",
    ["model", "version"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# Rows whose model call raised (endpoint "shadow" for shadow scoring): a version's error rate is these over these
# plus its serving_predictions_total (or serving_shadow_predictions_total).
PREDICTION_FAILURES = Counter(
    "serving_prediction_failures", "Rows whose model call raised", ["model", "version", "endpoint"]
)
MODEL_THREADS = Histogram(
    "serving_model_call_threads", "OpenMP threads per model call (serving/core/threads.py)", ["endpoint"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
VALIDATION_FAILURES = Counter("serving_validation_failures", "Rejected requests or items", ["endpoint", "reason"])
MODEL_LOADED = Gauge(
    "serving_model_loaded", "1 if the configured model loaded, 0 if it failed", ["model", "version"], multiprocess_mode="min"
)
# The lowest stage book traffic revision any worker of this server follows now: a rollout's controller waits for
# every server to reach the revision it wrote before it starts a step's clock (training/rollout/evidence.py).
TRAFFIC_REVISION = Gauge(
    "serving_traffic_revision", "Traffic plan revision (training/traffic.py) the workers follow", multiprocess_mode="min"
)
MODEL_LOAD_SECONDS = Gauge("serving_model_load_seconds", "Time to load the model", ["model", "version"], multiprocess_mode="max")
FEATURE_DECILE = Counter(
    "serving_feature_decile", "Live numeric inputs by decile of the model's reference sample", ["model", "feature", "decile"]
)
FEATURE_CATEGORY = Counter(
    "serving_feature_category", "Live categorical inputs by value (bounded set)", ["model", "feature", "value"]
)
LOG_FAILURES = Counter("serving_prediction_log_write_failures", "Prediction-log writes that failed")
DRIFT_SHARE = Gauge("serving_drift_share", "Share of drifted features in the last drift job", ["model"], multiprocess_mode="mostrecent")
DRIFT_SCORE = Gauge(
    "serving_drift_feature_score", "Per-feature drift score of the last drift job", ["model", "feature"], multiprocess_mode="mostrecent"
)
DRIFT_FLAG = Gauge(
    "serving_drift_feature_drifted", "1 if the feature drifted in the last drift job", ["model", "feature"], multiprocess_mode="mostrecent"
)
DRIFT_LEVEL = Gauge(
    "serving_drift_level", "Verdict of the last drift job: 0 ok, 1 warning, 2 drift", ["model"], multiprocess_mode="mostrecent"
)
DRIFT_REASON = Gauge(
    "serving_drift_reason",
    "1 for each reason of the last drift job's verdict (prediction, important_input, share, input), else 0",
    ["model", "reason"], multiprocess_mode="mostrecent",
)
DRIFT_LEVELS = ("ok", "warning", "drift")
DRIFT_REASONS = ("prediction", "important_input", "share", "input")
DRIFT_TIME = Gauge(
    "serving_drift_last_run_timestamp_seconds", "Unix time of the last drift job", ["model"], multiprocess_mode="mostrecent"
)


class FeatureSignals:
    """Per-model live feature distributions, positioned against the model's own reference sample.

    Vectorized for big batches: each numeric column is sorted once and the decile edges located in it (9 binary
    searches instead of one per value: 10,000 rows, 0.9 -> 0.2 ms for six columns), and a categorical column is
    counted by pandas' hash table (`pd.Categorical` codes). A batch of a few dozen values (an adaptive batch of
    /predict) takes the per-value paths, where the fixed cost of sorting and of pandas would cost more than they
    save. Each counter's labelled child is looked up once and kept.
    """

    SMALL = 256  # rows below which the per-value paths are faster

    def __init__(self, model: StoredModel):
        self.model = model.name
        reference = model.reference()
        schema = model.input_schema
        categorical = set(schema.get("categorical", []))
        self.edges = {
            column: np.unique(np.quantile(reference[column].to_numpy(dtype=np.float64), np.linspace(0.1, 0.9, 9)))
            for column in schema["columns"]
            if column not in categorical
        }
        self.categories = {
            column: list(reference[column].value_counts().index[:TOP_CATEGORIES]) for column in categorical
        }
        self._known = {column: set(values) for column, values in self.categories.items()}
        self._children: dict[tuple[Counter, str, str], Counter] = {}

    def _child(self, counter: Counter, column: str, label: str) -> Counter:
        key = (counter, column, label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(self.model, column, label)
        return child

    def observe(self, frame: pd.DataFrame) -> None:
        small = len(frame) < self.SMALL
        for column, edges in self.edges.items():
            values = frame[column].to_numpy()
            if small:  # decile k holds e[k-1] <= v < e[k]
                deciles = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
            else:  # the same from the other side: how many values lie below each edge, in the sorted column
                below = np.searchsorted(np.sort(values), edges, side="left")
                deciles = np.diff(below, prepend=0, append=len(values))
            for decile in np.flatnonzero(deciles):
                self._child(FEATURE_DECILE, column, str(decile)).inc(int(deciles[decile]))
        for column, known in self.categories.items():
            if small:
                seen = self._known[column]
                counts = Tally(value if value in seen else OTHER for value in frame[column].tolist())
            else:
                codes = pd.Categorical(frame[column], categories=known).codes  # -1: not among the known values
                tally = np.bincount(codes + 1, minlength=len(known) + 1)
                counts = {(known[i - 1] if i else OTHER): int(tally[i]) for i in np.flatnonzero(tally)}
            for value, count in counts.items():
                self._child(FEATURE_CATEGORY, column, str(value)).inc(count)


def observe_predictions(model: StoredModel, endpoint: str, proba: np.ndarray, classes: np.ndarray) -> None:
    counts = np.bincount(classes, minlength=2)
    for predicted_class in (0, 1):
        if counts[predicted_class]:
            PREDICTIONS.labels(model.name, model.version, endpoint, str(predicted_class)).inc(int(counts[predicted_class]))
    observe_many(PROBABILITY.labels(model.name, model.version), proba)


class Poller:
    """Calls `refresh` at start and then every `interval_s` seconds on a daemon thread, until `stop`."""

    def __init__(self, name: str, interval_s: float = 5.0):
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.refresh()

    def refresh(self) -> None:
        raise NotImplementedError


class DriftGauges(Poller):
    """Exports the drift job's latest summary (a JSON file it writes) as gauges; polls the file's mtime."""

    def __init__(self, path: Path, interval_s: float = 5.0):
        super().__init__("drift-gauges", interval_s)
        self.path = Path(path)
        self._mtime: float | None = None

    def refresh(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            logger.warning("cannot read drift state %s: %s", self.path, exc)
            return
        self._mtime = mtime
        self.apply(state)

    def apply(self, state: dict) -> None:
        for model, summary in state.items():
            DRIFT_SHARE.labels(model).set(float(summary.get("drift_share", 0.0)))
            DRIFT_TIME.labels(model).set(float(summary.get("ts", time.time())))
            level = summary.get("level")
            if level in DRIFT_LEVELS:  # entries written before the verdict existed have none
                DRIFT_LEVEL.labels(model).set(float(DRIFT_LEVELS.index(level)))
                for reason in DRIFT_REASONS:
                    DRIFT_REASON.labels(model, reason).set(1.0 if reason in summary.get("reasons", []) else 0.0)
            for feature, result in summary.get("features", {}).items():
                if result.get("score") is not None:  # the job writes null for a score Evidently could not compute
                    DRIFT_SCORE.labels(model, feature).set(float(result["score"]))
                DRIFT_FLAG.labels(model, feature).set(1.0 if result.get("drifted") else 0.0)
