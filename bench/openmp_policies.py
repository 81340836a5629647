"""libgomp's wait policies for a model call's threads, side by side (docs/performance.md).

    python -m bench.openmp_policies --reps 21

`purchase_gbm`'s `predict_proba` on 10,000 rows, in a fresh process per policy (libgomp reads its policy once, when
it loads): the pipeline as scikit-learn runs it (its trees walked one OpenMP region per tree) on one OpenMP thread
and on two, and the service's direct path (training/inference.py: the trees in one compiled walk,
training/trees.py) on one thread and as two slices of rows after one preparation of the inputs (the service's
`ModelThreads.run`). The policies matter only to scikit-learn's walk. Policies: libgomp's default (spin 300,000
times, then sleep), `OMP_WAIT_POLICY=passive` (sleep at once: what the service sets), and `GOMP_SPINCOUNT` 10,000
and 100,000. For each: wall time (minimum and median) and the process's CPU time per call (median); on a busy
machine the CPU column is the one to trust, and a thread count that costs more CPU than one thread is spinning.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

POLICIES = {"default": {}, "passive": {"OMP_WAIT_POLICY": "passive"},
            "spin 10,000": {"GOMP_SPINCOUNT": "10000"}, "spin 100,000": {"GOMP_SPINCOUNT": "100000"}}
DROPPED = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def measure(rows: int, reps: int) -> dict[str, list[float]]:
    """In this process: {variant: [wall median, wall min, cpu median]} in ms."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from threadpoolctl import threadpool_limits

    from training.data import generate_purchase
    from training.features import build_features
    from training.store import load_model

    frame = generate_purchase(rows, seed=7).drop(columns="purchased")
    model = load_model("purchase_gbm")
    halves = np.array_split(np.arange(rows), 2)
    pool = ThreadPoolExecutor(2, initializer=lambda: threadpool_limits(1, user_api="openmp"))
    assert model.direct is not None, "purchase_gbm is scored through the direct path"

    def pipeline() -> None:  # scikit-learn's own path, features included as the service builds them
        model.estimator.predict_proba(build_features(model.task, frame))

    def prepared_once() -> None:  # what ModelThreads.run does (serving/core/threads.py)
        rows = model.prepare(frame)
        second = pool.submit(model.score, rows[halves[1][0]:])
        model.score(rows[: halves[1][0]])
        second.result()

    variants = {"scikit-learn, 1 thread": (1, pipeline), "scikit-learn, 2 threads": (2, pipeline),
                "compiled, 1 thread": (1, lambda: model.predict_proba(frame)),
                "compiled, 2 slices prepared once": (1, prepared_once)}
    out: dict[str, list[float]] = {}
    for name, (threads, call) in variants.items():
        with threadpool_limits(threads, user_api="openmp"):
            call()
            walls, cpus = [], []
            for _ in range(reps):
                wall, cpu = time.perf_counter(), time.process_time()
                call()
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
        out[name] = [statistics.median(walls) * 1e3, min(walls) * 1e3, statistics.median(cpus) * 1e3]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openmp_policies", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.rows, args.reps)))
        return 0
    start = os.getloadavg()
    base = {k: v for k, v in os.environ.items() if k not in DROPPED}
    results = {}
    for policy, env in POLICIES.items():
        run = subprocess.run([sys.executable, "-m", "bench.openmp_policies", "--child", "--reps", str(args.reps),
                              "--rows", str(args.rows)], env={**base, **env}, capture_output=True, text=True, check=True)
        results[policy] = json.loads(run.stdout.strip().splitlines()[-1])
    lines = [f"`python -m bench.openmp_policies {' '.join(argv if argv is not None else sys.argv[1:])}`, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {args.rows:,} rows, {args.reps} calls each; load average at the start "
             f"{', '.join(f'{x:.2f}' for x in start)}, at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}, "
             f"{os.cpu_count()} CPUs.", "", "| wait policy | threads | wall ms, median / min | CPU ms per call |",
             "|---|---|---|---|"]
    for policy, variants in results.items():
        for name, (median, low, cpu) in variants.items():
            lines.append(f"| {policy} | {name} | {median:.1f} / {low:.1f} | {cpu:.1f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
