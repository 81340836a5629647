"""The serving benchmark suite (issue 5): every comparison measured in the same run, alternating, quoted as ratios.

    python -m bench.run                         # full suite, ~10-15 min on 2 cores; writes bench/results/
    python -m bench.run --quick --out /tmp/b    # CI smoke: tiny request counts, one concurrency

Needs the four default models in the store BENTOML_HOME points at (`python -m training.train`). The suite copies
that store into a temporary home (it adds a second version of the purchase models there), starts its servers on
free loopback ports (bench.harness.Server; the reference app under uvicorn), and stops them all at the end.

Scenarios: 1 adaptive batching on/off at several concurrencies; 2 /batch_predict vs the raw in-process pipeline vs
the reference app; 3 /v1/predict with 1, 2 and 4 models on shared inputs; 4 prediction log on/off and the cost of
metrics per batch; 5 the reference app (bench/reference_app.py); 6 start-up time and memory. "threads" compares
the OpenMP bound of serving/predictor.py against the library default (one thread per core), before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")


@dataclass
class Config:
    concurrencies: list[int]
    focus_concurrency: int  # where log on/off and threads before/after are also measured
    load_rounds: int
    load_seconds: float
    load_requests: int
    sizes: list[int]
    focus_size: int
    size_reps: dict[int, int]
    v1_records: int
    v1_reps: int
    breakdown_sizes: list[int]
    sequential_start: bool
    threads_variant: bool
    mode: str = "full"
    notes: list[str] = field(default_factory=list)


FULL = Config(
    concurrencies=[1, 8, 32, 64], focus_concurrency=32, load_rounds=4, load_seconds=5.0, load_requests=6_000,
    sizes=[100, 1_000, 10_000, 50_000], focus_size=10_000,
    size_reps={100: 20, 1_000: 15, 10_000: 8, 50_000: 4},
    v1_records=2_000, v1_reps=20, breakdown_sizes=[32, 10_000], sequential_start=True, threads_variant=True,
)
QUICK = Config(
    concurrencies=[8], focus_concurrency=8, load_rounds=1, load_seconds=1.0, load_requests=200,
    sizes=[100, 1_000], focus_size=1_000, size_reps={100: 2, 1_000: 2},
    v1_records=200, v1_reps=2, breakdown_sizes=[32], sequential_start=False, threads_variant=False, mode="quick",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke: seconds of load, one concurrency")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where results.md and PNGs go")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temporary store, logs and server output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    source_home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))

    from bench.servers import private_store

    home = private_store(source_home, workdir)
    os.environ["BENTOML_HOME"] = str(home)
    # In-process measurements use prometheus_client in multiprocess mode, like the server; the harness drops this
    # variable for the servers it starts (bentoml serve manages its own).
    (workdir / "prometheus").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prometheus")

    from bench.load import LoadProcess

    loader = LoadProcess()
    running = []
    try:
        from bench import scenarios

        results = scenarios.run_all(cfg, workdir, loader, running, log=print)
    finally:
        for server in running:
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"stopping {server.name} failed: {exc}", file=sys.stderr)
        loader.close()
        if not args.keep_workdir:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)

    results["meta"] = {
        "mode": cfg.mode,
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
        "load_average_start_end": results.pop("load_average"),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    from bench.report import write_report

    write_report(results, cfg, args.out)
    print(f"wrote {args.out}/results.md in {results['meta']['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
