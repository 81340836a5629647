"""Benchmark of the daily scoring job: rows per second and peak memory, per engine and input size.

    python bench/bench_scoring.py                                   # 1M rows, local and spark, purchase_gbm
    python bench/bench_scoring.py --rows 1000000 10000000 --engines local local-process spark

For each size it writes a synthetic Parquet input (row groups of 250k rows, so Spark can split it) in a temporary
folder, then runs, each in its own process so memory is measured alone:
- `baseline`: read the whole file, then one in-process `predict_proba` call on the whole DataFrame. The limit:
  no validation, no output, no bounded memory. Its rows/s counts the model call only.
- `local` (threads), `local-process` (worker processes), `spark` (local[*]): the real `python -m scoring` CLI.
  "job rows/s" is the summary's figure (Spark's includes its session start-up); "wall rows/s" adds interpreter
  start-up, imports and model loading, what a scheduler sees.
Peak memory is the largest sum of RSS over the process tree (the JVM and Python workers for Spark), sampled
every 0.1 s, so shared pages of forked workers count twice. Results go to bench/results/scoring.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

BLOCK_ROWS = 1_000_000
ROW_GROUP_ROWS = 250_000


def make_input(rows: int, path: Path) -> None:
    """Generated in blocks of a million rows, so a 10M-row input never sits in memory whole."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.data import generate_purchase

    writer = None
    for start in range(0, rows, BLOCK_ROWS):
        block = generate_purchase(min(BLOCK_ROWS, rows - start), seed=1_000 + start // BLOCK_ROWS)
        block = block.drop(columns="purchased")
        block.insert(0, "student_id", np.arange(start, start + len(block), dtype=np.int64))
        table = pa.Table.from_pandas(block, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    if writer is not None:
        writer.close()


def measure(command: list[str]) -> tuple[float, float, str]:
    """Run a command; return wall seconds, peak RSS of its process tree (MiB) and its stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err)
        root = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited {process.returncode}:\n{stdout}\n{stderr[-3000:]}")
    return wall, peak / 2**20, stdout


def baseline_child(path: str, model_name: str) -> None:
    """In a child process: the whole file in memory, one predict_proba call."""
    import pandas as pd

    from training.store import load_model

    model = load_model(model_name)
    frame = pd.read_parquet(path)
    started = time.perf_counter()
    model.predict_proba(frame[list(model.input_schema["columns"])])
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(frame)}))


def run_case(engine: str, rows: int, path: Path, folder: Path, args: argparse.Namespace) -> dict:
    python = sys.executable
    if engine == "baseline":
        wall, peak, stdout = measure([python, __file__, "--baseline-child", str(path), args.model])
        seconds = json.loads(stdout.strip().splitlines()[-1])["seconds"]
        return {"engine": engine, "rows": rows, "wall": wall, "seconds": seconds, "peak_mib": peak}
    summary_path = folder / f"{engine}-{rows}.json"
    output = folder / f"{engine}-{rows}.parquet"
    command = [python, "-m", "scoring", "--input", str(path), "--model", args.model, "--output", str(output),
               "--chunk-rows", str(args.chunk_rows), "--summary-json", str(summary_path), "--no-progress"]  # fmt: skip
    if engine == "local-process":
        command += ["--pool", "process"]
    if engine == "spark":
        command += ["--engine", "spark", "--spark-master", args.spark_master, "--spark-conf", "spark.ui.enabled=false"]
        for item in args.spark_conf:
            command += ["--spark-conf", item]
    wall, peak, _ = measure(command)
    summary = json.loads(summary_path.read_text())
    assert summary["rows_in"] == rows, summary
    return {"engine": engine, "rows": rows, "wall": wall, "seconds": summary["seconds"], "peak_mib": peak}


def table(results: list[dict], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = [
        "# Scoring job benchmark",
        "",
        f"Model `{args.model}`, chunk {args.chunk_rows:,} rows, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}. "
        f"Load average before/after: {load[0]:.1f} / {load[1]:.1f} (other jobs share this machine: figures are noisy).",
        f"Command: `python bench/bench_scoring.py {' '.join(sys.argv[1:])}`",
        "",
        "| rows | engine | job s | job rows/s | wall s | wall rows/s | peak RSS MiB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['engine']} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | "
            f"{r['wall']:.1f} | {r['rows'] / r['wall']:,.0f} | {r['peak_mib']:,.0f} |"
        )
    lines += [
        "",
        "baseline: the whole file read into one DataFrame and scored by one `predict_proba` call (job s = that call "
        "only); no validation, no output written. job s of the CLI engines: the summary's time (reading, validation, "
        "scoring, writing output and rejects; Spark's includes session start-up). wall s: the whole process.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--engines", nargs="+", default=["baseline", "local", "spark"],
                        choices=["baseline", "local", "local-process", "spark"])  # fmt: skip
    parser.add_argument("--model", default="purchase_gbm")
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    parser.add_argument("--spark-master", default="local[*]")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scoring.md")
    parser.add_argument("--baseline-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        baseline_child(*args.baseline_child)
        return 0

    from bench.harness import train_if_missing

    train_if_missing(args.model)
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        folder = Path(tmp)
        for rows in args.rows:
            path = folder / f"students-{rows}.parquet"
            make_input(rows, path)
            for engine in args.engines:
                result = run_case(engine, rows, path, folder, args)
                print(json.dumps(result), flush=True)
                results.append(result)
                for leftover in folder.glob(f"{engine}-{rows}*.parquet"):  # keep the temp disk small
                    subprocess.run(["rm", "-rf", str(leftover)], check=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(results, args, (load_before, os.getloadavg()[0])))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
