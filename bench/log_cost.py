"""What logging costs a scored batch, in thread CPU time (robust to a busy machine, unlike wall time): the model
call, the feature signals, the prediction ids, encoding the batch for the prediction log and writing it; then the
compaction of a segment of `--segment-rows` rows into Parquet (process CPU time: Arrow uses several threads).

    python bench/log_cost.py --rows 10000                              # this checkout
    python bench/log_cost.py --rows 10000 --root ../main               # another checkout's service code
    for i in 1 2 3; do python bench/log_cost.py --root ../main; python bench/log_cost.py; done   # side by side

One JSON line per run (medians of `--repeats`, milliseconds, the load average). A checkout from before the Arrow log
(issue 21) is measured on its JSON lines (`monitoring.predictlog.to_lines`). Needs `purchase_gbm` in the store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/log_cost.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose service code is measured")
    parser.add_argument("--segment-rows", type=int, default=150_000, help="rows of the segment compacted (0: none)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.root.resolve()))
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="log-cost-prom-"))

    import numpy as np
    import orjson
    from threadpoolctl import threadpool_limits

    from serving.codecs.records import purchase_validator
    from serving.core import metrics
    from serving.core.ids import new_ids
    from training.data import generate_purchase
    from training.store import load_model

    model = load_model("purchase_gbm")
    records = generate_purchase(args.rows, seed=5).drop(columns="purchased").to_dict("records")
    frame = purchase_validator(max(args.rows, 1)).batch_body(orjson.dumps({"records": records}))
    signals = metrics.FeatureSignals(model)
    folder = Path(tempfile.mkdtemp(prefix="log-cost-"))
    arrow = (args.root / "monitoring" / "logbatch.py").exists()
    if arrow:
        from monitoring.logbatch import LogBatch, LogContext, encode
        from monitoring.predictlog import PredictionLog

        def encoded(proba, classes, ids):
            return encode(LogBatch(frame, proba, classes, ids=ids, context=LogContext(
                endpoint="/bench", model_name=model.name, model_version=model.version, request_id="bench")))
    else:  # the JSON lines of the log before issue 21
        from monitoring.predictlog import PredictionLog, now_iso, to_lines

        def encoded(proba, classes, ids):
            return to_lines(frame, proba, classes, request_id="bench", endpoint="/bench", model_name=model.name,
                            model_version=model.version, ts=now_iso(), per_row={"prediction_id": ids})
    log = PredictionLog(folder / "log.jsonl", 1 << 40)
    steps: dict[str, list[float]] = {k: [] for k in ("predict", "signals", "ids", "log_encode", "log_write")}
    # One OpenMP thread, in any checkout: thread_time counts the calling thread only, so a second one would hide work.
    threadpool_limits(1, user_api="openmp")
    try:
        for _ in range(args.repeats):
            t0 = time.thread_time()
            proba = model.predict_proba(frame)
            classes = model.classify(proba)
            t1 = time.thread_time()
            signals.observe(frame)
            t2 = time.thread_time()
            ids = new_ids(len(frame))
            t3 = time.thread_time()
            batch = encoded(proba, classes, ids)
            t4 = time.thread_time()
            assert log.write(batch)
            t5 = time.thread_time()
            for key, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                steps[key].append(value)
    finally:
        log.close()
    result = {k: round(float(np.median(v)) * 1e3, 3) for k, v in steps.items()}
    if args.segment_rows:
        result.update(compaction(folder / "segment", arrow, encoded, args.segment_rows // len(frame), proba, classes))
    print(json.dumps({"log": "arrow" if arrow else "jsonl", "root": str(args.root), "rows": args.rows,
                      "load_average": os.getloadavg()[0], **result}))
    return 0


def compaction(folder: Path, arrow: bool, encoded, batches: int, proba, classes) -> dict[str, float]:
    """A sealed segment of `batches` batches written by the checkout's own writer, then compacted by its own code."""
    import resource

    from monitoring.predictlog import PredictionLog
    from serving.core.ids import new_ids

    log = PredictionLog(folder / "log.jsonl", 1 << 40)
    for _ in range(batches):
        log.write(encoded(proba, classes, new_ids(len(proba))))
    log.close()
    if arrow:
        from monitoring.compaction import compact

        [segment] = folder.glob("log.jsonl.*.arrows")
    else:  # the JSON-lines writer left its live file: rotate it as it would have
        from monitoring.segments import compact

        segment = (folder / "log.jsonl").rename(folder / "log.jsonl.20260101T000000000000.1")
    size = segment.stat().st_size
    before = resource.getrusage(resource.RUSAGE_SELF)
    parquet = compact(segment)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"segment_rows": batches * len(proba), "segment_mb": round(size / 2**20, 1),
            "compaction_cpu_ms": round(cpu * 1e3, 1), "parquet_mb": round(parquet.stat().st_size / 2**20, 1)}


if __name__ == "__main__":
    raise SystemExit(main())
