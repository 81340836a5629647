"""The drift job at scale: end-to-end wall time (the command, imports included) and peak RSS over logs of 1M, 3M and
10M predictions of one model.

    python bench/bench_drift.py                       # 1M, 3M, 10M; results in bench/results/drift.{md,json,png}
    python bench/bench_drift.py --sizes 1000000       # one size
    python bench/bench_drift.py --compare-sample 5000000   # Evidently on a 5M window vs its 200k sample
    python bench/bench_drift.py --engines local spark --sizes 1000000 10000000   # the Spark engine beside the local

The logs are written in the writer's on-disk format: compacted Parquet segments of 150,000 rows written by
`monitoring.compaction.write_segment`, the function compaction uses, plus an Arrow segment written by
`PredictionLog` (the first read compacts it, as a reader compacts a sealed segment nobody compacted). Rows are real traffic draws (`monitoring.simulate`) with the model's
real predictions, one second apart. They are generated once per model version and cached in bench/.cache/drift (gitignored); each
size's folder links the first N rows' segments. Peak RSS is the job's own (`os.wait4` of the child); with the Spark
engine the driver is that Python process plus its JVM (driver and, in local mode, executors), so the peak of the
whole process tree is sampled too (every 0.1 s, psutil).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

CACHE = ROOT / "bench" / ".cache" / "drift"
SEGMENT_ROWS = 150_000
LIVE_ROWS = 20_000
MODEL = "purchase_gbm"
START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _encode(model, rows: int, seed: int, start: datetime):
    import numpy as np

    from monitoring.simulate import draw_traffic

    frame = draw_traffic(rows, seed=seed)
    proba = model.predict_proba(frame)
    stamps = np.datetime64(start.replace(tzinfo=None), "us") + np.arange(rows) * np.timedelta64(1, "s")
    return frame, proba, model.classify(proba), stamps


def model_cache(model) -> Path:
    """This model version's cached segments and logs: a retrained model gets its own, never another version's."""
    return CACHE / f"{model.name}-{model.version}"


def segment_paths(model, count: int) -> list[Path]:
    """The first `count` cached segments, generating the missing ones (vectorized, one Arrow table per segment)."""
    import pyarrow as pa

    from monitoring.compaction import write_segment

    folder = model_cache(model)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        start = START + timedelta(seconds=number * SEGMENT_ROWS)
        path = folder / f"prediction_log.jsonl.{start.strftime('%Y%m%dT%H%M%S%f')}.1.parquet"
        if not path.exists():
            frame, proba, classes, stamps = _encode(model, SEGMENT_ROWS, 1_000 + number, start)
            columns = {
                "ts": pa.array(stamps.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
                "request_id": pa.array([f"bench-{number}-{i // 100}" for i in range(SEGMENT_ROWS)]),
                "endpoint": pa.array(["/batch_predict"] * SEGMENT_ROWS),
                "model_name": pa.array([model.name] * SEGMENT_ROWS),
                "model_version": pa.array([model.version] * SEGMENT_ROWS),
                "routing_key": pa.nulls(SEGMENT_ROWS),
                "variant": pa.array([model.labels.get("variant")] * SEGMENT_ROWS),
                **{c: pa.array(frame[c].to_numpy()) for c in frame.columns},
                "probability": pa.array(proba),
                "prediction": pa.array(classes.astype("int64")),
            }
            write_segment(pa.table(columns), path)
            print(f"  generated {path.name}", file=sys.stderr)
        paths.append(path)
    return paths


def log_of(model, rows: int) -> Path:
    """A folder holding a log of `rows` predictions: linked segments plus an Arrow segment of the newest rows."""
    from monitoring.logbatch import LogBatch, LogContext
    from monitoring.predictlog import PredictionLog

    folder = model_cache(model) / f"log-{rows}"
    live = folder / "prediction_log.jsonl"
    done = folder / ".complete"
    if done.exists():
        return live
    shutil.rmtree(folder, ignore_errors=True)  # a half-written log, or one in the JSONL format of older versions
    folder.mkdir(parents=True, exist_ok=True)
    segments = segment_paths(model, (rows - LIVE_ROWS) // SEGMENT_ROWS)
    for path in segments:
        (folder / path.name).symlink_to(path)
    tail = rows - len(segments) * SEGMENT_ROWS
    frame, proba, classes, stamps = _encode(model, tail, 7, START + timedelta(seconds=len(segments) * SEGMENT_ROWS))
    log = PredictionLog(live, max_bytes=1 << 40)
    for begin in range(0, tail, 1_000):
        part = slice(begin, begin + 1_000)
        ts = stamps[begin].astype("datetime64[us]").item().replace(tzinfo=timezone.utc)
        log.append(LogBatch(frame.iloc[part], proba[part], classes[part], context=LogContext(
            endpoint="/batch_predict", model_name=model.name, model_version=model.version,
            request_id=f"live-{begin}", ts=ts)))
    log.close()
    done.touch()
    return live


def _tree_rss(process) -> int:
    """Bytes resident in `process` and its descendants (the Spark engine's JVM is a child of the job)."""
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:  # exited between the listing and the read
            pass
    return total


def run_job(log: Path, out: Path, extra: list[str]) -> dict:
    """The drift command as a user runs it; wall time, the child's own peak RSS and its process tree's."""
    import threading

    import psutil

    command = [sys.executable, "-m", "monitoring.drift", "--model", MODEL, "--log", str(log), "--out", str(out),
               "--state", str(out / "state.json"), "--workspace", str(out / "workspace"), "--all", *extra]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        # Files, not pipes: nobody reads a pipe while wait4 blocks, and Spark's stderr can fill one.
        child = subprocess.Popen(command, cwd=ROOT, stdout=out_file, stderr=err_file)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            try:
                process = psutil.Process(child.pid)
                while not done.wait(0.1):
                    peak[0] = max(peak[0], _tree_rss(process))
            except psutil.Error:
                pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        done.set()
        sampler.join()
        wall = time.perf_counter() - started
        out_file.seek(0)
        err_file.seek(0)
        stdout, stderr = out_file.read().decode(), err_file.read().decode()
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise RuntimeError(f"drift job failed: {stderr[-2000:]}")
    summary = json.loads((out / f"{MODEL}_drift_latest.json").read_text())
    # CPU seconds too: on a shared, busy machine the wall time mostly measures the neighbours.
    # CPU of the waited-for child only: the JVM's own CPU is not in it (it is in the wall time).
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "tree_peak_rss_mb": round(peak[0] / 2**20, 1),
            "summary_seconds": summary["seconds"], "rows": summary["rows"], "sample": summary["sample"],
            "verdict": summary["verdict"]["level"], "stdout_tail": stdout.splitlines()[-6:]}


def compare_sample(model, rows: int, max_rows: int, seed: int = 0) -> dict:
    """Evidently on a whole window of `rows` against its uniform sample of `max_rows`: verdicts and score gaps."""
    from monitoring.drift import extract, prepare, run_report
    from monitoring.drift.verdict import important_inputs, judge
    from monitoring.logreader import read_window

    log = log_of(model, rows)
    columns = ["ts", "model_version", *model.input_schema["columns"], "probability"]
    out = {}
    for label, limit in (("sample", max_rows), ("full", None)):
        started = time.perf_counter()
        window = read_window(log.parent, model.name, model.version, columns, max_rows=limit, seed=seed)
        reference, current, numerical, categorical = prepare(model.input_schema, model.reference(), window.frame)
        result = extract(run_report(reference, current, numerical, categorical).dict())
        verdict = judge(result, important_inputs(model.metadata))
        out[label] = {"rows": len(window.frame), "verdict": verdict.level, "dataset_drift": result["dataset_drift"],
                      "scores": {c: f["score"] for c, f in result["features"].items()},
                      "seconds": round(time.perf_counter() - started, 1)}
        del window, reference, current
    gaps = {c: abs(out["full"]["scores"][c] - out["sample"]["scores"][c]) for c in out["full"]["scores"]}
    return {**out, "window_rows": rows, "max_score_gap": round(max(gaps.values()), 5),
            "same_verdict": out["full"]["verdict"] == out["sample"]["verdict"]}


def plot(results: list[dict], path: Path) -> None:
    """Wall time and peak RSS (the job's process tree) against log size, per engine, with the issue's targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for engine in dict.fromkeys(r["engine"] for r in results):
        mine = [r for r in results if r["engine"] == engine]
        rows = [r["log_rows"] / 1e6 for r in mine]
        time_axis.plot(rows, [r["wall_s"] for r in mine], "o-", label=f"{engine} engine")
        memory_axis.plot(rows, [r["tree_peak_rss_mb"] / 1024 for r in mine], "s-", label=f"{engine} engine")
    time_axis.plot([1, 10], [10, 30], "kx", markersize=10, label="target (10 s at 1M, 30 s at 10M)")
    memory_axis.axhline(2, color="k", linestyle=":", label="target at 10M (2 GB)")
    time_axis.set(xlabel="logged predictions of one model (millions)", ylabel="wall time, end to end (s)",
                  title="python -m monitoring.drift --all", ylim=(0, None))
    memory_axis.set(xlabel="logged predictions of one model (millions)", ylabel="peak RSS, job and JVM (GB)",
                    title="memory (a 200,000-row sample is analysed)", ylim=(0, None))
    time_axis.legend(loc="center right")
    memory_axis.legend(loc="lower right")
    for axis in (time_axis, memory_axis):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--engines", nargs="+", choices=["local", "spark"], default=["local"],
                        help="the job's --engine; spark runs with --spark-master and spark.ui.enabled=false")
    parser.add_argument("--spark-master", default="local[*]")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--compare-sample", type=int, metavar="ROWS",
                        help="instead: Evidently on a whole window of ROWS rows vs its 200,000-row sample")
    args = parser.parse_args()

    from bench.harness import train_if_missing
    from training.store import load_model

    train_if_missing(MODEL)
    model = load_model(f"{MODEL}:latest")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.compare_sample:
        comparison = compare_sample(model, args.compare_sample, 200_000)
        (args.out / "drift_sample_vs_full.json").write_text(json.dumps(comparison, indent=2))
        print(json.dumps({k: v for k, v in comparison.items() if k not in ("full", "sample")}))
        return 0
    results = []
    spark = ["--engine", "spark", "--spark-master", args.spark_master, "--spark-conf", "spark.ui.enabled=false",
             *(a for item in args.spark_conf for a in ("--spark-conf", item))]
    for rows in args.sizes:
        log = log_of(model, rows)
        for engine in args.engines:
            with tempfile.TemporaryDirectory() as out:
                result = {"engine": engine, "log_rows": rows,
                          **run_job(log.parent, Path(out), spark if engine == "spark" else [])}
            print(f"{engine:>5} {rows:>11,} rows: {result['wall_s']} s, CPU {result['cpu_s']} s, peak RSS "
                  f"{result['peak_rss_mb']} MB (process tree {result['tree_peak_rss_mb']} MB)", file=sys.stderr)
            results.append(result)
    payload = {"machine_load_1m": os.getloadavg()[0], "machine_load": os.getloadavg(), "drift_job": results,
               "spark_master": args.spark_master if "spark" in args.engines else None}
    (args.out / "drift.json").write_text(json.dumps(payload, indent=2))
    plot(results, args.out / "drift_time_vs_rows.png")
    lines = ["# Drift job at scale (bench/bench_drift.py)", "",
             "Load average at the end (1, 5, 15 min): " + ", ".join(f"{v:.1f}" for v in payload["machine_load"])
             + f" on {os.cpu_count()} cores."
             + (f" Spark master {args.spark_master}." if payload["spark_master"] else ""),
             "", "| engine | logged rows | wall (s) | CPU (s) | peak RSS (MB) | process tree peak RSS (MB) "
             "| analysed rows | job's own timings (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        analysed = r["sample"]["rows"] if r["sample"] else r["rows"]
        lines.append(f"| {r['engine']} | {r['log_rows']:,} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | "
                     f"{r['tree_peak_rss_mb']} | {analysed:,} | {json.dumps(r['summary_seconds'])} |")
    lines.append("")
    (args.out / "drift.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
