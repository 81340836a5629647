"""Scoring a validated batch with one served model, and what every scored batch leaves behind: metrics, live
feature signals and prediction-log lines. The HTTP layer (service.py) only parses, routes and answers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from monitoring.predictlog import BackgroundLog, PredictionLog, now_iso, to_lines
from serving import metrics
from serving.ids import new_ids
from serving.registry import ModelEntry, Registry
from serving.routing import ABRouter
from settings import Settings

logger = logging.getLogger(__name__)

# OpenMP threads per model call (HistGradientBoosting predicts with OpenMP). libgomp's default, one thread per
# core, spin-waits at its barriers: with the event loop, the batcher's thread, concurrent /v1/predict model calls
# and noisy neighbours on the same 2 cores, a 10,000-row predict measured 1.4 s instead of 50 ms here and
# /predict at concurrency 32 lost 5x of its throughput (bench/results: "OpenMP threads before/after"). So model
# calls use one OpenMP thread, as BentoML's runner strategy pins OMP_NUM_THREADS per worker; an explicit
# OMP_NUM_THREADS in the environment is respected instead. The setting is per thread (omp_set_num_threads), so it
# is made once in each thread that calls a model (our threads are pooled and reused); it changes no prediction.
_OPENMP_THREADS = None if os.environ.get("OMP_NUM_THREADS") else 1
_OPENMP = ThreadpoolController().select(user_api="openmp") if _OPENMP_THREADS else None
_bounded = threading.local()


def bound_inference_threads() -> None:
    """Bound the calling thread's OpenMP threads for model calls (once per thread)."""
    if _OPENMP is None or getattr(_bounded, "done", False):
        return
    for library in _OPENMP.lib_controllers:
        library.set_num_threads(_OPENMP_THREADS)
    _bounded.done = True


@dataclass
class Scored:
    proba: np.ndarray
    classes: np.ndarray
    ids: list[str]  # one prediction_id per row (serving/ids.py), also in the row's log line


class Predictor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.registry = Registry(settings.served_models, settings.max_records)
        self.router = ABRouter(settings.ab_weights, settings.default_purchase_model)
        log_class = BackgroundLog if settings.prediction_log_mode == "background" else PredictionLog
        self.log = (
            log_class(settings.prediction_log_path, settings.prediction_log_max_bytes, on_failure=self._log_failed)
            if settings.prediction_log
            else None
        )
        self.signals: dict[str, metrics.FeatureSignals] = {}
        for entry in self.registry.entries:
            metrics.MODEL_LOADED.labels(entry.name, entry.version or "none").set(1 if entry.model else 0)
            metrics.MODEL_LOAD_SECONDS.labels(entry.name, entry.version or "none").set(entry.load_seconds)
            if entry.model is not None and entry.requested not in self.signals:
                try:
                    self.signals[entry.requested] = metrics.FeatureSignals(entry.model)
                except Exception as exc:  # noqa: BLE001 - a missing reference sample costs the signal, not the model
                    logger.warning("no live feature signals for %s: %s", entry.requested, exc)

    @staticmethod
    def _log_failed(_: BaseException) -> None:
        metrics.LOG_FAILURES.inc()

    def purchase_model(self, routing_key: str | None) -> ModelEntry:
        """The purchase variant for this caller (A/B when configured). Raises LookupError when not loaded."""
        return self.registry.get(self.router.choose(routing_key))

    def score(
        self,
        entry: ModelEntry,
        frame: pd.DataFrame,
        *,
        endpoint: str,
        request_id: str | list[str],
        routing_key: str | None = None,
        row_keys: dict[str, list] | None = None,
    ) -> Scored:
        """Predict, then count, observe and log the batch; logging problems never fail the prediction."""
        model = entry.model
        assert model is not None, "registry.get only returns loaded models"
        started = time.perf_counter()
        bound_inference_threads()
        proba = model.predict_proba(frame)
        metrics.INFERENCE.labels(model.name).observe(time.perf_counter() - started)
        classes = model.classify(proba)
        ids = new_ids(len(frame))
        metrics.BATCH_ROWS.labels(endpoint).observe(len(frame))
        metrics.observe_predictions(model, endpoint, proba, classes)
        signals = self.signals.get(entry.requested)
        if signals is not None:
            signals.observe(frame)
        if self.log is not None:
            encode = partial(
                to_lines,
                frame,
                proba,
                classes,
                request_id=request_id,
                endpoint=endpoint,
                model_name=model.name,
                model_version=model.version,
                routing_key=routing_key,
                variant=model.labels.get("variant"),
                ts=now_iso(),  # the prediction's time, even when a background thread encodes it later
                per_row={"prediction_id": ids, **(row_keys or {})},  # row_keys: e.g. a bound row's serial_number
            )
            self.log.submit(encode, len(frame))
        return Scored(proba, classes, ids)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
