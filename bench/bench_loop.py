"""Benchmark of the experiment loop: feedback ingestion and the quality job.

    python bench/bench_loop.py                                   # 1M predictions, 200k outcomes, 10 requests
    python bench/bench_loop.py --predictions 100000 --outcomes 20000 --requests 3   # a quick look

1. Feedback ingestion: `--requests` POST /v1/feedback calls of 10,000 new outcomes each against a real
   `bentoml serve` (bench/harness.py), one at a time, then the same outcomes again (all duplicates); beside it,
   the outcome store alone in process (monitoring/outcomes.py), so the HTTP share shows as a ratio.
2. The quality job over `--predictions` logged predictions (purchase_gbm and purchase_lr at 50/50, written by the
   service's own log writer, rotated at PREDICTION_LOG_MAX_BYTES and compacted to Parquet like a server's) with
   `--outcomes` outcomes: the real `python -m monitoring.quality` CLI, wall time, with and without the Evidently
   reports, and the job's own phase timings.
Needs the default models in the store (`make train`, or BENTOML_HOME pointing at a store that has them). Results go
to bench/results/loop.json and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

CHUNK = 10_000


def bench_ingestion(requests: int, workdir: Path) -> dict:
    from bench.harness import Server
    from monitoring.outcomes import Outcome, OutcomeStore
    from serving.core.ids import new_ids

    (workdir / "server").mkdir(exist_ok=True)
    server = Server(workdir / "server", {"OUTCOME_LOG_PATH": str(workdir / "server" / "outcomes.jsonl")})
    try:
        server.wait_until_up(timeout=300, ready=False)
        bodies = [{"outcomes": [{"prediction_id": i, "outcome": int(k % 3 == 0)} for k, i in enumerate(new_ids(CHUNK))]}
                  for _ in range(requests)]
        payloads = [json.dumps(b).encode() for b in bodies]
        with httpx.Client(timeout=120, headers={"content-type": "application/json"}) as client:
            client.post(server.url + "/v1/feedback", content=json.dumps({"outcomes": bodies[0]["outcomes"][:10]}))
            timings = {}
            for kind in ("new", "duplicate"):
                started = time.perf_counter()
                for payload in payloads:
                    response = client.post(server.url + "/v1/feedback", content=payload)
                    assert response.status_code == 200, response.text
                timings[kind] = time.perf_counter() - started
    finally:
        server.stop()
    store = OutcomeStore(workdir / "inprocess.jsonl", 64 << 20)
    batches = [[Outcome(i, 1) for i in new_ids(CHUNK)] for _ in range(requests)]
    started = time.perf_counter()
    for batch in batches:
        store.ingest(batch)
    in_process = time.perf_counter() - started
    total = requests * CHUNK
    return {
        "requests": requests,
        "items_per_request": CHUNK,
        "http_new_outcomes_per_s": round(total / timings["new"]),
        "http_duplicate_outcomes_per_s": round(total / timings["duplicate"]),
        "in_process_store_outcomes_per_s": round(total / in_process),
        "http_over_store_time": round(timings["new"] / in_process, 2),
    }


def write_log(predictions: int, outcomes: int, workdir: Path) -> tuple[Path, Path]:
    from monitoring.outcomes import Outcome, OutcomeStore
    from monitoring.logbatch import LogBatch, LogContext
    from monitoring.predictlog import Maintenance, PredictionLog
    from monitoring.simulate import draw_traffic
    from serving.core.ids import new_ids
    from serving.core.predictor import bound_inference_threads
    from settings import get_settings
    from training.schema import PURCHASE
    from training.store import load_model

    log_path, outcome_path = workdir / "prediction_log.jsonl", workdir / "outcomes.jsonl"
    log = PredictionLog(log_path, get_settings().prediction_log_max_bytes, maintenance=Maintenance(retention=None))
    models = [load_model("purchase_gbm"), load_model("purchase_lr")]
    store = OutcomeStore(outcome_path, 64 << 20)
    rng = np.random.default_rng(0)
    batch = 10_000
    bound_inference_threads()  # one OpenMP thread, as the service's model calls
    frame = draw_traffic(min(predictions, 200_000), seed=11, with_outcome=True)
    outcome_share = outcomes / predictions
    pending: list = []
    for start in range(0, predictions, batch):
        rows = frame.iloc[start % len(frame): start % len(frame) + batch]
        model = models[(start // batch) % 2]
        proba = model.predict_proba(rows[PURCHASE.columns])
        ids = new_ids(len(rows))
        log.append(LogBatch(rows[PURCHASE.columns], proba, model.classify(proba), ids=ids, context=LogContext(
            endpoint="/batch_predict", model_name=model.name, model_version=model.version, request_id="bench",
            variant=model.labels.get("variant"))))
        keep = rng.random(len(rows)) < outcome_share
        pending += [Outcome(i, int(y)) for i, y, k in zip(ids, rows[PURCHASE.label], keep) if k]
        while len(pending) >= CHUNK:
            store.ingest(pending[:CHUNK])
            pending = pending[CHUNK:]
    if pending:
        store.ingest(pending)
    log.close()  # compacts what it sealed
    return log_path, outcome_path


def bench_quality(predictions: int, outcomes: int, workdir: Path) -> dict:
    log_path, outcome_path = write_log(predictions, outcomes, workdir)
    results = {"predictions": predictions, "outcomes_target": outcomes}
    for label, extra in (("with_evidently", []), ("without_evidently", ["--no-evidently"])):
        out = workdir / label
        command = [sys.executable, "-m", "monitoring.quality", "--task", "purchase", "--log", str(log_path),
                   "--outcomes", str(outcome_path), "--out", str(out), "--state", str(out / "state.json"),
                   "--workspace", str(out / "workspace"), *extra]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        summary = json.loads((out / "quality_purchase.json").read_text())
        results[label] = {"wall_s": round(wall, 2), "phases_s": summary["seconds"],
                          "with_outcome": summary["with_outcome"]}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--outcomes", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=10, help="10,000-outcome feedback requests to time")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "loop.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        workdir = Path(tmp)
        results = {"ingestion": bench_ingestion(args.requests, workdir),
                   "quality": bench_quality(args.predictions, args.outcomes, workdir)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
