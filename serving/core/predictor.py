"""Scoring a validated batch with one served model, and what every scored batch leaves behind: metrics, live
feature signals and its rows in the prediction log. The HTTP layer (service.py) only parses, routes and answers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitoring.logbatch import LogBatch, LogContext, now
from monitoring.predictlog import PredictionLog
from serving.core import metrics
from serving.core.ids import new_ids
from serving.core.lifecycle import Follower
from serving.core.readiness import Readiness, readiness
from serving.core.registry import ModelEntry, Registry
from serving.core.routing import ABRouter
from serving.core.shadow import ShadowScorer
from serving.core.threads import ModelThreads
from settings import Settings
from training import traffic
from training.store import task_of

logger = logging.getLogger(__name__)
SHADOWED_ENDPOINTS = ("/predict", "/batch_predict")

@dataclass
class Scored:
    proba: np.ndarray
    classes: np.ndarray
    ids: list[str]  # one prediction_id per row (serving/core/ids.py), also in the row's log line


class Predictor:
    def __init__(self, settings: Settings):
        self.settings = settings
        # The task whose traffic the purchase routes carry: the stage book's plan for it replaces AB_WEIGHTS and
        # SHADOW_MODELS (training/traffic.py).
        self.door_task = task_of(settings.default_purchase_model)
        # Shadow models are served too (they follow the store like any alias), but only ever scored in the background.
        configured = [*settings.served_models, *settings.shadow_models]
        try:
            plan = traffic.read()
        except Exception:  # noqa: BLE001 - an unreadable plan must not stop the start: the follower retries it
            logger.exception("cannot read the stage book's traffic plan; serving SERVED_MODELS until it reads")
            plan = traffic.Plan()
        self.registry = Registry(Follower.initial(configured, plan))
        # Each model call's OpenMP threads: what is free on the server's cores when it starts (serving/core/threads.py).
        self.threads = ModelThreads.from_settings(settings.model_threads, settings.core_tokens_dir,
                                                  settings.omp_num_threads)
        self.router = ABRouter(settings.ab_weights, settings.default_purchase_model)
        self.shadow = ShadowScorer(settings.shadow_models, self.registry.get, self._score_shadow, settings.shadow_queue)
        self.log = PredictionLog.from_settings(settings, on_failure=self._log_failed) if settings.prediction_log else None
        self.signals: dict[str, metrics.FeatureSignals] = {}
        for entry in self.registry.entries:
            self._track(entry, None)
        self.follower = Follower(self.registry, settings.model_refresh_seconds, configured, on_change=self._track,
                                 on_refreshed=self._follow_plan)
        self.follower.refresh()  # the plan's own references and weights before the first request
        self.follower.start()

    def _follow_plan(self, plan: traffic.Plan) -> None:
        """Route the purchase traffic as the plan says for the door's task, else by AB_WEIGHTS and SHADOW_MODELS."""
        planned = plan.tasks.get(self.door_task) if self.door_task else None
        if planned is None:
            why = f"AB_WEIGHTS and SHADOW_MODELS: the stage book routes no traffic of task {self.door_task}"
            weights, shadows = self.settings.ab_weights, self.settings.shadow_models
        else:
            why = f"stage book revision {plan.revision}" + (f": {planned.reason}" if planned.reason else "")
            weights, shadows = planned.weights, list(planned.shadow)
        self.router.set_weights(weights, why)
        self.router.follow(self._why_not_served)
        self.shadow.follow(shadows, why)
        metrics.TRAFFIC_REVISION.set(plan.revision)

    def _track(self, entry: ModelEntry, replaced: ModelEntry | None) -> None:
        """Metrics and live feature signals follow each entry loaded at start or swapped in."""
        if replaced is not None and replaced.model is not None:
            metrics.MODEL_LOADED.labels(replaced.name, replaced.version).set(0)
        metrics.MODEL_LOADED.labels(entry.name, entry.version or "none").set(1 if entry.model else 0)
        metrics.MODEL_LOAD_SECONDS.labels(entry.name, entry.version or "none").set(entry.load_seconds)
        if entry.model is not None:
            try:
                self.signals[entry.requested] = metrics.FeatureSignals(entry.model)
            except Exception as exc:  # noqa: BLE001 - a missing reference sample costs the signal, not the model
                logger.warning("no live feature signals for %s: %s", entry.requested, exc)

    @staticmethod
    def _log_failed(_: BaseException) -> None:
        metrics.LOG_FAILURES.inc()

    def _why_not_served(self, name: str) -> str | None:
        try:
            self.registry.get(name)
        except LookupError as exc:
            return str(exc)
        return None

    def purchase_model(self, routing_key: str | None) -> ModelEntry:
        """The purchase variant for this caller (A/B when configured). Raises ModelNotServed or ModelUnavailable."""
        try:
            return self.registry.get(self.router.choose(routing_key))
        except LookupError:
            # The registry moved before the routing did (a rollback swaps the candidate's alias out, and the
            # follower re-routes after): take out the arms not served now and choose again, once.
            arms = self.router.arms
            self.router.follow(self._why_not_served)
            if self.router.arms == arms:
                raise
            return self.registry.get(self.router.choose(routing_key))

    def readiness(self) -> Readiness:
        return readiness(self.registry, self.router)

    def score(
        self,
        entry: ModelEntry,
        frame: pd.DataFrame,
        *,
        endpoint: str,
        request_id: str | list[str],
        routing_key: str | None = None,
        shared_inputs: bool = False,
        row_keys: dict[str, list] | None = None,
    ) -> Scored:
        """Predict, then count, observe and log the batch; logging problems never fail the prediction.

        `shared_inputs`: other models score this same frame object (/v1/predict), so the log converts it once."""
        model = entry.model
        assert model is not None, "registry.get only returns loaded models"
        started = time.perf_counter()
        with self.threads.call(len(frame)) as threads:
            try:
                proba = self.threads.run(model, frame, threads)
            except Exception:
                metrics.PREDICTION_FAILURES.labels(model.name, model.version, endpoint).inc(len(frame))
                raise
        metrics.INFERENCE.labels(model.name, model.version).observe(time.perf_counter() - started)
        metrics.MODEL_THREADS.labels(endpoint).observe(threads)
        classes = model.classify(proba)
        ids = new_ids(len(frame))
        metrics.BATCH_ROWS.labels(endpoint).observe(len(frame))
        metrics.observe_predictions(model, endpoint, proba, classes)
        signals = self.signals.get(entry.requested)
        if signals is not None:
            signals.observe(frame)
        context = {"prediction_id": ids, "row_keys": row_keys or {}, "request_id": request_id,
                   "routing_key": routing_key, "endpoint": endpoint, "ts": now()}
        self._log(entry, frame, proba, classes, context, shadow=False, shared_inputs=shared_inputs)
        if self.shadow.shadows and endpoint in SHADOWED_ENDPOINTS:
            # The primary's prediction ids go into `context` and reach the shadow lines unchanged.
            self.shadow.submit(frame, entry, {**context, "primary_proba": proba, "primary_class": classes})
        return Scored(proba, classes, ids)

    def _log(self, entry: ModelEntry, frame: pd.DataFrame, proba: np.ndarray, classes: np.ndarray, context: dict,
             *, shadow: bool, shared_inputs: bool = False) -> None:
        if self.log is None:
            return
        model = entry.model
        assert model is not None
        # The primary's ids and time on shadow rows too (the `shadow` flag tells them apart); row_keys: a bound
        # row's serial_number.
        self.log.append(LogBatch(frame, proba, classes, ids=context["prediction_id"], shared_inputs=shared_inputs,
                                 context=LogContext(
                                     endpoint=context["endpoint"], model_name=model.name, model_version=model.version,
                                     request_id=context["request_id"], routing_key=context["routing_key"],
                                     variant=model.labels.get("variant"), alias=entry.alias, shadow=shadow,
                                     ts=context["ts"], row_keys=context["row_keys"])))

    def _score_shadow(self, entry: ModelEntry, frame: pd.DataFrame, context: dict) -> tuple[np.ndarray, np.ndarray]:
        """A shadow model's predictions for the primary's records: logged (shadow: true), never answered."""
        assert entry.model is not None
        started = time.perf_counter()
        with self.threads.call(len(frame), background=True):
            proba = entry.model.predict_proba(frame)
        # Timed like a served call (the same frames as the primary's): a rollout's shadow step compares the two.
        metrics.INFERENCE.labels(entry.model.name, entry.model.version).observe(time.perf_counter() - started)
        classes = entry.model.classify(proba)
        self._log(entry, frame, proba, classes, context, shadow=True)
        return proba, classes

    def close(self) -> None:
        self.follower.stop()
        self.shadow.close()  # shadow lines still queued reach the log before it closes
        if self.log is not None:
            self.log.close()
        self.threads.close()
