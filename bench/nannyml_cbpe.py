"""Runs inside bench/.nannyml-venv (never the project's environment): NannyML 0.13.1's CBPE on a reference and an
analysis Parquet file, per-chunk estimates and sampling errors out as JSON. Called by bench/nannyml_reference.py.

    python bench/nannyml_cbpe.py SPEC.json       # {"reference", "analysis", "out", "chunk_period" | "chunk_size"}

Both files hold `y_pred_proba`, `y_pred` and (reference) `y_true`; the analysis file a `timestamp` for period chunks.
"""

import json
import os
import sys
import time

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # NannyML's own switch for its Segment telemetry (usage_logging.py)

started, started_cpu = time.perf_counter(), time.process_time()
import pandas as pd  # noqa: E402
from nannyml.performance_estimation.confidence_based import CBPE  # noqa: E402

METRICS = ["roc_auc", "precision", "recall", "accuracy"]


def main(spec_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    imported, imported_cpu = time.perf_counter(), time.process_time()
    reference = pd.read_parquet(spec["reference"])
    analysis = pd.read_parquet(spec["analysis"])
    chunking = ({"chunk_period": spec["chunk_period"], "timestamp_column_name": "timestamp"}
                if spec.get("chunk_period") else {"chunk_size": spec["chunk_size"]})
    if spec.get("chunk_period"):
        reference = reference.assign(timestamp=pd.Timestamp("2000-01-01"))  # one reference chunk; only fit uses it
    read, read_cpu = time.perf_counter(), time.process_time()
    estimator = CBPE(metrics=METRICS, y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                     problem_type="classification_binary", **chunking)
    estimator.fit(reference)
    fitted = time.perf_counter()
    result = estimator.estimate(analysis).filter(period="analysis").to_df()
    estimated, estimated_cpu = time.perf_counter(), time.process_time()
    chunks = []
    for _, row in result.iterrows():
        chunks.append({
            "start": str(row[("chunk", "start_date")]) if spec.get("chunk_period") else None,
            "start_index": int(row[("chunk", "start_index")]),
            "end_index": int(row[("chunk", "end_index")]),
            **{m: {"value": float(row[(m, "value")]), "sampling_error": float(row[(m, "sampling_error")])}
               for m in METRICS},
        })
    out = {"needs_calibration": bool(estimator.needs_calibration), "chunks": chunks,
           "seconds": {"import": round(imported - started, 3), "read": round(read - imported, 3),
                       "fit": round(fitted - read, 3), "estimate": round(estimated - fitted, 3),
                       "import_cpu": round(imported_cpu - started_cpu, 3),
                       "fit_and_estimate_cpu": round(estimated_cpu - read_cpu, 3)}}
    with open(spec["out"], "w") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main(sys.argv[1])
