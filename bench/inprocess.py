"""In-process baselines: the raw /batch_predict pipeline without HTTP, the model's own work on a DataFrame, the raw
predict time of each model, and the cost of metrics and logging per scored batch.

The service's own pieces are used (serving.codecs.records, training.store, serving.core.metrics, serving.core.ids,
monitoring.predictlog), so "service / raw" is what HTTP, BentoML and the service's bookkeeping add. Model calls get
their OpenMP threads as the service's do (serving/core/threads.py: the cores free when the call starts, as many as
its rows can use).
"""

from __future__ import annotations

import os
import time

import numpy as np
import orjson
import pandas as pd

from serving.core import metrics
from serving.core.threads import ModelThreads
from serving.codecs.records import RecordsValidator
from training.store import StoredModel

THREADS = ModelThreads.from_settings(None, None, os.environ.get("OMP_NUM_THREADS"))  # this process's own budget


def raw_pipeline(model: StoredModel, validator: RecordsValidator, body: bytes) -> dict[str, float]:
    """parse + validate (one pydantic-core pass) -> frame + rules -> features + predict -> serialize, as
    serving.web.purchase.batch_predict does it minus HTTP, metrics and the log; seconds per stage."""
    t0 = time.perf_counter()
    frame = validator.batch_body(body)
    t1 = time.perf_counter()
    with THREADS.call(len(frame)) as threads:
        proba = THREADS.run(model, frame, threads)
    classes = model.classify(proba)
    t2 = time.perf_counter()
    payload = {
        "predictions": [
            {"predicted_purchase_probability": p, "predicted_purchase": c}
            for p, c in zip(proba.tolist(), classes.tolist())
        ],
        "model_name": model.name,
        "model_version": model.version,
    }
    out = orjson.dumps(payload)
    t3 = time.perf_counter()
    assert len(out) > 0
    return {"total": t3 - t0, "parse_validate": t1 - t0, "predict": t2 - t1, "serialize": t3 - t2}


def dataframe_pipeline(model: StoredModel, frame: pd.DataFrame) -> dict[str, float]:
    """The model's own work on rows already in a DataFrame: features + predict_proba + classes (issue 11's
    "raw pipeline on a DataFrame", the floor of any columnar door)."""
    t0 = time.perf_counter()
    with THREADS.call(len(frame)) as threads:
        proba = THREADS.run(model, frame, threads)
    classes = model.classify(proba)
    t1 = time.perf_counter()
    assert len(classes) == len(frame)
    return {"total": t1 - t0, "predict": t1 - t0}


# --- per-batch bookkeeping of Predictor.score ------------------------------------------------------------------------

def score_breakdown(model: StoredModel, frame: pd.DataFrame, log_path, repeats: int) -> dict[str, float]:
    """Median seconds per scored batch of: the model call, our metrics (counters, probability histogram, batch
    rows), live feature signals, the prediction ids, encoding the batch for the log (one Arrow record batch) and
    writing it (in the kernel before the answer: the `sync` mode). Prometheus runs in multiprocess mode here
    (PROMETHEUS_MULTIPROC_DIR is set by bench.run), as in the server."""
    from monitoring.logbatch import LogBatch, LogContext, encode
    from monitoring.predictlog import PredictionLog
    from serving.core.ids import new_ids

    signals = metrics.FeatureSignals(model)
    log = PredictionLog(log_path, 1 << 40)
    stages: dict[str, list[float]] = {k: [] for k in ("predict", "metrics", "signals", "ids", "log_encode", "log_write")}
    request_ids = [f"r{i}" for i in range(len(frame))] if len(frame) <= 64 else "request"
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            with THREADS.call(len(frame)) as threads:
                proba = THREADS.run(model, frame, threads)
            t1 = time.perf_counter()
            metrics.INFERENCE.labels(model.name, model.version).observe(t1 - t0)
            classes = model.classify(proba)
            metrics.BATCH_ROWS.labels("/bench").observe(len(frame))
            metrics.observe_predictions(model, "/bench", proba, classes)
            t2 = time.perf_counter()
            signals.observe(frame)
            t3 = time.perf_counter()
            ids = new_ids(len(frame))
            t4 = time.perf_counter()
            record = encode(LogBatch(frame, proba, classes, ids=ids, context=LogContext(
                endpoint="/bench", model_name=model.name, model_version=model.version, request_id=request_ids)))
            t5 = time.perf_counter()
            assert log.write(record)
            t6 = time.perf_counter()
            for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                stages[key].append(value)
    finally:
        log.close()
    return {key: float(np.median(values)) for key, values in stages.items()}


def predict_time(model: StoredModel, frame: pd.DataFrame) -> float:
    started = time.perf_counter()
    with THREADS.call(len(frame)) as threads:
        THREADS.run(model, frame, threads)
    return time.perf_counter() - started
