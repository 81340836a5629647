"""The label-free estimate beside NannyML 0.13.1's CBPE on the same window, and the estimate at a busy day's scale.

    python bench/bench_estimate.py                         # 1M rows vs NannyML; 10M rows ours alone
    python bench/bench_estimate.py --rows 1000000 --big 0  # skip the 10M run

The window: purchase_gbm's real probabilities for training-like students (one OpenMP thread), one day long,
hourly chunks. Ours: `estimate_quality` in-process (the model store's calibrator and threshold). NannyML: its CBPE
fitted on the model's held-out split and run on the same window, in its own virtualenv
(bench/nannyml_reference.py); its import, fit and estimate are timed inside that process, and the whole process
(interpreter start included) from outside. The big run adds the quality job's estimate block (per variant, per
variant and hour, per version; outcomes for a fifth of the rows) at 10M rows. Results: bench/results/estimate.json.
Both sides run one after the other on the same machine: read the ratio, and the load average printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

MODEL = "purchase_gbm"
DAY_S = 24 * 3600


def window(model, rows: int, seed: int):
    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from training.data import generate_purchase
    from training.schema import PURCHASE

    students = generate_purchase(min(rows, 1_000_000), seed=seed)
    with threadpool_limits(1, user_api="openmp"):
        proba = model.predict_proba(students[PURCHASE.columns])
    proba = np.resize(proba, rows)  # past 1M rows: the same draw again (the estimate's cost depends on the count)
    ts = pd.Timestamp("2026-11-23T00:00:00Z") + pd.to_timedelta(np.arange(rows) * (DAY_S / rows), "s")
    outcome = np.resize(students[PURCHASE.label].to_numpy(), rows)
    return proba, ts, outcome


def ours(model, proba, ts) -> dict:
    import pandas as pd

    from monitoring.quality.estimate import ModelCalibration, estimate_quality

    frame = pd.DataFrame({"model_name": model.name, "model_version": model.version, "probability": proba, "ts": ts})
    calibrations = {(model.name, model.version): ModelCalibration.from_store(model.name, model.version)}
    wall, cpu = time.perf_counter(), time.process_time()
    groups = estimate_quality(frame, calibrations, chunk="1h")
    return {"seconds": round(time.perf_counter() - wall, 3), "cpu_seconds": round(time.process_time() - cpu, 3),
            "chunks": len(groups), "roc_auc": [g.metrics["roc_auc"].value for g in groups]}


def nannyml(model, proba, ts) -> dict:
    import pandas as pd

    from bench import nannyml_reference

    holdout = model.holdout()
    reference = pd.DataFrame({"y_pred_proba": holdout["probability"], "y_true": holdout["label"],
                              "y_pred": (holdout["probability"] >= model.threshold).astype(int)})
    analysis = pd.DataFrame({"y_pred_proba": proba, "y_pred": (proba >= model.threshold).astype(int),
                             "timestamp": ts.tz_localize(None)})
    nannyml_reference.install()
    wall = time.perf_counter()
    result = nannyml_reference.cbpe(reference, analysis, chunk_period="h")
    return {"process_seconds": round(time.perf_counter() - wall, 3), **result["seconds"],
            "needs_calibration": result["needs_calibration"], "chunks": len(result["chunks"]),
            "roc_auc": [c["roc_auc"]["value"] for c in result["chunks"]]}


def job_block(model, proba, ts, outcome) -> dict:
    import numpy as np
    import pandas as pd

    from monitoring.quality.window_estimates import window_estimates

    rows = len(proba)
    labelled = np.arange(rows) % 5 == 0
    frame = pd.DataFrame({"model_name": model.name, "model_version": model.version,
                          "alias": np.where(np.arange(rows) % 10 == 0, "purchase@canary", "purchase@production"),
                          "variant": model.labels["variant"], "ts": ts, "probability": proba,
                          "outcome": np.where(labelled, outcome, np.nan)})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = time.perf_counter(), time.process_time()
    block = window_estimates(frame, "1h")
    return {"rows": rows, "with_outcome": int(labelled.sum()), "seconds": round(time.perf_counter() - wall, 3),
            "cpu_seconds": round(time.process_time() - cpu, 3), "groups": len(block["groups"]),
            "chunks": sum(len(g["chunks"]) for g in block["groups"]),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_rss_mb_before": round(before / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the window compared with NannyML")
    parser.add_argument("--big", type=int, default=10_000_000, help="rows of the job-scale run (0: skip)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "estimate.json"))
    args = parser.parse_args()

    from bench.harness import train_if_missing
    from training.store import load_model

    train_if_missing(MODEL)
    model = load_model(MODEL)
    results: dict = {"model": model.tag, "calibrator": model.calibrator().method, "load_before": os.getloadavg()}
    proba, ts, outcome = window(model, args.rows, seed=5)
    results["ours"] = ours(model, proba, ts)
    results["nannyml"] = nannyml(model, proba, ts)
    results["largest_roc_auc_difference"] = max(
        abs(a - b) for a, b in zip(results["ours"].pop("roc_auc"), results["nannyml"].pop("roc_auc")))
    results["cpu_ratio_nannyml_fit_and_estimate_to_ours"] = round(
        results["nannyml"]["fit_and_estimate_cpu"] / results["ours"]["cpu_seconds"], 1)
    if args.big:
        proba, ts, outcome = window(model, args.big, seed=5)
        results["job_block"] = job_block(model, proba, ts, outcome)
    results["load_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
