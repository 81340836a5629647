"""Shadow traffic: every record the primary scores on /predict and /batch_predict is also scored by the shadow
models (SHADOW_MODELS), off the response path, and logged with `shadow: true` and the primary's request id. The
client never sees a shadow prediction.

One worker thread and a bounded queue (SHADOW_QUEUE batches): when the queue is full the batch is skipped and
counted (`serving_shadow_skipped_total`), so shadow scoring can never slow or block the primary. The thread is a
plain `ThreadPoolExecutor` with a semaphore bounding what it has been given.

The shadow references are SHADOW_MODELS until the stage book's traffic plan names the task's (training/traffic.py);
`follow` then replaces them, with a line in the server log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import numpy as np
from prometheus_client import Counter, Histogram

from serving.core.metrics import PREDICTION_FAILURES, PROBABILITY_BUCKETS
from serving.core.registry import ModelEntry
from serving.seam import observe_many

logger = logging.getLogger(__name__)
events = logging.getLogger("bentoml.service")  # BentoML's server log shows this logger's info lines

SHADOWED = Counter("serving_shadow_predictions", "Records scored by a shadow model", ["model", "version"])
SKIPPED = Counter("serving_shadow_skipped", "Records not shadow-scored because the shadow queue was full", ["model"])
AGREED = Counter(
    "serving_shadow_agreements", "Shadow-scored records whose predicted class equals the primary's", ["primary", "shadow"]
)
DIFFERENCE = Histogram(
    "serving_shadow_probability_difference", "Shadow minus primary probability, per record", ["primary", "shadow"],
    buckets=(-0.5, -0.2, -0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
)
FAILED = Counter("serving_shadow_failures", "Shadow batches that failed (logged, never seen by clients)", ["model"])
# The shadow's own predicted probabilities: a rollout's shadow step compares them with the primary's
# serving_prediction_probability on the same traffic (training/rollout/gates.py).
PROBABILITY = Histogram(
    "serving_shadow_probability", "Predicted probability of the positive class by a shadow model", ["model", "version"],
    buckets=PROBABILITY_BUCKETS,
)

# (entry, frame, the primary's log fields) -> (probabilities, classes): the predictor's scoring and logging.
ScoreFn = Callable[[ModelEntry, pd.DataFrame, dict], tuple[np.ndarray, np.ndarray]]


class ShadowScorer:
    def __init__(self, shadows: list[str], lookup: Callable[[str], ModelEntry], score: ScoreFn, queue: int):
        self.shadows = list(shadows)
        self.lookup = lookup
        self.score = score
        self._room = threading.BoundedSemaphore(queue)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")

    def follow(self, shadows: list[str], why: str) -> bool:
        """Shadow-score with `shadows` from now on (one assignment); says whether they changed."""
        shadows = list(dict.fromkeys(shadows))
        if shadows == self.shadows:
            return False
        events.info("shadow models: %s -> %s (%s)", ",".join(self.shadows) or "none", ",".join(shadows) or "none", why)
        self.shadows = shadows
        return True

    def submit(self, frame: pd.DataFrame, primary: ModelEntry, context: dict) -> None:
        """Queue `frame` (already validated for the primary) for every shadow model; never blocks."""
        for shadow in self.shadows:
            if not self._room.acquire(blocking=False):
                SKIPPED.labels(shadow).inc(len(frame))
                continue
            self._pool.submit(self._run, shadow, frame, primary, context)

    def _run(self, shadow: str, frame: pd.DataFrame, primary: ModelEntry, context: dict) -> None:
        try:
            entry = self.lookup(shadow)
            if entry.tag == primary.tag:
                return  # the shadow alias points at the primary's own version: nothing to compare
            try:
                proba, classes = self.score(entry, frame[entry.columns], context)
            except Exception:
                PREDICTION_FAILURES.labels(entry.name, str(entry.version), "shadow").inc(len(frame))
                raise
            SHADOWED.labels(entry.name, str(entry.version)).inc(len(frame))
            observe_many(PROBABILITY.labels(entry.name, str(entry.version)), proba)
            # Live comparison on /metrics (agreement rate = agreements / predictions); the full one is
            # `python -m monitoring.shadow` over the log.
            AGREED.labels(primary.name, entry.name).inc(int(np.sum(classes == context["primary_class"])))
            observe = DIFFERENCE.labels(primary.name, entry.name).observe
            for difference in (proba - context["primary_proba"]).tolist():
                observe(difference)
        except LookupError:
            FAILED.labels(shadow).inc()  # not loaded, or an empty stage: /v1/models says why, once, not per request
        except Exception as exc:  # noqa: BLE001 - a shadow failure is counted and logged, never surfaced
            FAILED.labels(shadow).inc()
            logger.warning("shadow scoring with %s failed: %s", shadow, exc)
        finally:
            self._room.release()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
