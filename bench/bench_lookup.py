"""Finding one prediction by id in a large log (GET /v1/predictions/{id}/explanation): time and memory as the log
grows, to show that a lookup reads footers and one row group, not the log.

    .venv/bin/python -m bench.bench_lookup [--rows 250000 2000000] [--segment-mb 16] [--out bench/results]

For each size, a real prediction log is written by the service's own writer (monitoring/predictlog.py: Arrow
segments sealed at --segment-mb, every sealed one compacted to Parquet, the last left an Arrow stream as a live one
is), then ids are looked up through monitoring/lookup.py, each in a fresh process so that its peak memory is the
lookup's own (Python's, by tracemalloc, and Arrow's memory pool, where the tables live): the oldest prediction, one in
the middle, the newest (in the Arrow stream segment) and an unknown id.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from monitoring.logbatch import LogBatch, LogContext
from monitoring.maintenance import Maintenance, run_pass
from monitoring.predictlog import PredictionLog
from serving.core.ids import new_ids
from training.data import generate_purchase
from training.schema import PURCHASE

BATCH = 10_000
UNKNOWN = "01a00000-0000-7000-8000-000000000000"
PROBE = """
import json, sys, time, tracemalloc
import pyarrow as pa
from monitoring.lookup import find_prediction
tracemalloc.start()
started = time.perf_counter()
found = find_prediction(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - started
print(json.dumps({"found": found is not None, "seconds": seconds,
                  "peak_python_mb": tracemalloc.get_traced_memory()[1] / 1e6,
                  "peak_arrow_mb": pa.default_memory_pool().max_memory() / 1e6}))
"""

def write_log(path: Path, rows: int, segment_bytes: int) -> dict[str, str]:
    maintenance = Maintenance(compact=True, retention=None, finish_on_close=False)
    log = PredictionLog(path, segment_bytes, maintenance=maintenance)
    inputs = generate_purchase(BATCH, seed=1)[PURCHASE.columns]
    proba = np.random.default_rng(0).random(BATCH)
    marks: dict[str, str] = {}
    batches = rows // BATCH
    for number in range(batches):
        ids = new_ids(BATCH)
        context = LogContext(endpoint="/batch_predict", model_name="purchase_gbm", model_version="v1",
                             request_id=f"r{number}")
        assert log.append(LogBatch(inputs, proba, (proba > 0.5).astype(np.int64), context, ids=ids))
        if number == 0:
            marks["oldest"] = ids[0]
        if number == batches // 2:
            marks["middle"] = ids[BATCH // 2]
        marks["newest"] = ids[-1]
    run_pass(path, maintenance)  # compacts the sealed segments; the one still open stays an Arrow stream
    log.close()
    return marks


def probe(source: Path, prediction_id: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(source), prediction_id], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[250_000, 2_000_000])
    parser.add_argument("--segment-mb", type=float, default=16)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="bench-lookup-") as folder:
            path = Path(folder) / "prediction_log.jsonl"
            marks = write_log(path, rows, int(args.segment_mb * 1024 * 1024))
            files = sorted(Path(folder).iterdir())
            size = sum(f.stat().st_size for f in files) / 1e6
            row = {"rows": rows, "files": len(files), "log_mb_on_disk": round(size, 1),
                   "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
            for name, prediction_id in [*marks.items(), ("unknown", UNKNOWN)]:
                row[name] = probe(path, prediction_id)
                assert row[name]["found"] == (name != "unknown"), (name, row[name])
            results.append(row)
            print(json.dumps(row))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lookup.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
