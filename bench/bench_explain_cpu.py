"""The explainer's own cost, this checkout against an earlier revision of training/ (default: the commit before the
hybrid rows were deduplicated across records and assembled feature by feature), side by side in one run:

- CPU seconds (the process's own, so a loaded machine inflates them far less than wall time) to explain one record
  (median of --single calls) and --records records in one call (median of --reps calls), one OpenMP thread as
  serving, for each model of --models, rounds alternating between the two revisions;
- the peak of Python's and NumPy's allocations during the big call (tracemalloc);
- the largest difference between the two revisions' contributions (the same game: it must be ~0);
- with --profile, a pyinstrument profile of one big call of each revision (text, in --out).

    BENTOML_HOME=<a trained store> .venv/bin/python -m bench.bench_explain_cpu [--baseline REV] [--records 1000]

Each measurement runs in a fresh process; the baseline's training/ comes from `git archive REV`, first on its path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "461aaa6"  # the merge of main into issue-25-explain, before this bench's optimizations


def worker(model_name: str, records: int, single: int, reps: int, out: str, profile: str | None) -> None:
    """One revision, in this process: explain, time, and save the contributions."""
    import tracemalloc

    import numpy as np
    from threadpoolctl import threadpool_limits

    from training.data import generate_purchase, generate_drive_stats
    from training.explain.explainer import Explainer
    from training.store import load_model

    model = load_model(f"{model_name}:latest")
    inputs = list(model.input_schema["columns"])
    generate = generate_purchase if model.task == "purchase" else generate_drive_stats
    frame = generate(max(records, single), seed=7)[inputs].reset_index(drop=True)
    explainer = Explainer(model)
    with threadpool_limits(1, user_api="openmp"):
        explainer.explain(frame.head(1))  # warm: caches, imports
        one = []
        for i in range(single):
            started = time.process_time()
            explainer.explain(frame.iloc[[i]])
            one.append(time.process_time() - started)
        big = []
        for rep in range(reps):
            if rep == 0:
                tracemalloc.start()
            started = time.process_time()
            explanation = explainer.explain(frame.head(records))
            big.append(time.process_time() - started)
            if rep == 0:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.002)
            profiler.start()
            explainer.explain(frame.head(records))
            profiler.stop()
            Path(profile).write_text(profiler.output_text(unicode=False, color=False))
    np.save(out, explanation.contributions)
    print(json.dumps({"one_record_cpu_ms": statistics.median(one) * 1e3, "big_call_cpu_s": statistics.median(big),
                      "big_calls_cpu_s": big, "peak_mb": peak / 2**20}))


def baseline_tree(revision: str) -> Path:
    """The baseline's training/ package in a temporary folder."""
    archive = subprocess.run(["git", "archive", revision, "training"], cwd=ROOT, capture_output=True, check=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="explain-baseline-"))
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run(revision: str, path: Path | None, args: argparse.Namespace, model: str, out: Path, profile: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(path) if path else "", str(ROOT)) if p)}
    command = [sys.executable, "-m", "bench.bench_explain_cpu", "--worker", model, "--records", str(args.records),
               "--single", str(args.single), "--reps", str(args.reps), "--save", str(out)]
    if profile:
        command += ["--profile-to", str(Path(args.out) / f"explain-profile-{model}-{revision}.txt")]
    done = subprocess.run(command, cwd=ROOT if path is None else path, env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    parser.add_argument("--models", nargs="+", default=["purchase_gbm", "purchase_lr"])
    parser.add_argument("--records", type=int, default=1_000)
    parser.add_argument("--single", type=int, default=100, help="one-record calls")
    parser.add_argument("--reps", type=int, default=2, help="big calls per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per revision, alternating")
    parser.add_argument("--profile", action="store_true", help="also a pyinstrument profile of one big call each")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if not args.save or not args.save.endswith(".npy"):  # np.save("") writes a file named ".npy" in the cwd
            parser.error("--worker needs --save PATH.npy")
        worker(args.worker, args.records, args.single, args.reps, args.save, args.profile_to)
        return 0
    import numpy as np

    from bench.harness import train_if_missing

    train_if_missing(*args.models)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    old = baseline_tree(args.baseline)
    revisions = {args.baseline: old, "this checkout": None}
    result: dict = {"command": "python -m bench.bench_explain_cpu " + " ".join(argv or sys.argv[1:]),
                    "loadavg_before": loadavg(), "models": {}}
    for model in args.models:
        runs: dict[str, list[dict]] = {name: [] for name in revisions}
        saved = {name: old / f"{model}-{i}.npy" for i, name in enumerate(revisions)}
        for round_index in range(args.rounds):
            names = list(revisions) if round_index % 2 == 0 else list(reversed(revisions))
            for name in names:
                profile = args.profile and round_index == 0
                label = "baseline" if revisions[name] else "current"
                runs[name].append(run(label, revisions[name], args, model, saved[name], profile))
                print(f"{model} {name:>14}: one record {runs[name][-1]['one_record_cpu_ms']:6.2f} ms CPU, "
                      f"{args.records} records {runs[name][-1]['big_call_cpu_s']:6.2f} s CPU, peak "
                      f"{runs[name][-1]['peak_mb']:.0f} MB  (load {loadavg()})", flush=True)
        first, second = (np.load(saved[name]) for name in revisions)
        summary = {name: {"one_record_cpu_ms": statistics.median(r["one_record_cpu_ms"] for r in rs),
                          "big_call_cpu_s": statistics.median(c for r in rs for c in r["big_calls_cpu_s"]),
                          "peak_mb": max(r["peak_mb"] for r in rs)} for name, rs in runs.items()}
        summary["speedup_big_call"] = summary[args.baseline]["big_call_cpu_s"] / summary["this checkout"]["big_call_cpu_s"]
        summary["max_difference"] = float(np.abs(first - second).max())
        result["models"][model] = summary
        print(f"{model}: {args.records} records {summary['speedup_big_call']:.2f}x faster; contributions differ by at "
              f"most {summary['max_difference']:.1e}", flush=True)
    result["loadavg_after"] = loadavg()
    (Path(args.out) / "explain_cpu.json").write_text(json.dumps(result, indent=2))
    print(f"load average before {result['loadavg_before']}, after {result['loadavg_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
