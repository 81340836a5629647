"""The serving benchmark suite (issues 5, 10, 11 and 21): every comparison measured in the same run, alternating,
quoted as ratios against peers serving the same model, and every figure taken twice: by the bench's own client and
by a tool not written here (`hey` for load, `curl` for single big requests). See docs/benchmarks.md.

    make bench                                  # full suite (~6 min on 2 cores); writes bench/results/
    python -m bench.run --quick --out /tmp/b    # CI smoke: tiny request counts, no MLServer needed
    python -m bench.run --only predict,batch    # some scenarios only

Needs `hey` and `curl` (`apt-get install -y hey curl`, or `make bench-tools`), the four default models in the store
BENTOML_HOME points at (`python -m training.train`) and, for the MLServer peer, its virtualenv (`python -m
bench.mlserver_peer install`; without it MLServer is skipped with a printed reason). The suite copies the store into
a temporary home (it adds a second version of the purchase models there), starts its servers on free loopback ports
one after another, and stops them all at the end.

Peers, each at its defaults: the service (`bentoml serve`, 1 worker), MLServer 1.7.1 serving the same `purchase_gbm`
exported as one sklearn pipeline (bench/mlserver_peer.py), the FastAPI reference app (bench/reference_app.py) and the
framework's ceiling (bench/ceiling_service.py). Scenarios: see bench/scenarios.py SCENARIOS.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")


@dataclass
class Config:
    focus_concurrency: int  # /predict against the peers, and WORKERS=2 vs 1
    mixed_concurrency: int  # /predict beside a stream of big batches
    load_rounds: int
    load_seconds: float
    load_requests: int
    warm_seconds: float  # per target and tool, before the measured rounds
    focus_size: int  # rows in one request, every door
    size_reps: dict[int, int]
    big_rows: int  # rows of the one big Arrow request
    big_reps: int
    v1_records: int
    v1_reps: int
    breakdown_sizes: list[int]
    sequential_start: bool = True
    mlserver_parallel_workers: int | None = 0  # None: MLServer's own default
    skip_servers: tuple[str, ...] = ()
    mode: str = "full"
    notes: list[str] = field(default_factory=list)


FULL = Config(
    focus_concurrency=32, mixed_concurrency=8, load_rounds=3, load_seconds=4.0, load_requests=8_000, warm_seconds=1.5,
    focus_size=10_000, size_reps={10_000: 11}, big_rows=100_000, big_reps=3,
    v1_records=2_000, v1_reps=20, breakdown_sizes=[32, 10_000],
)
QUICK = Config(
    focus_concurrency=8, mixed_concurrency=4, load_rounds=1, load_seconds=1.0, load_requests=200, warm_seconds=0.5,
    focus_size=1_000, size_reps={1_000: 2}, big_rows=2_000, big_reps=1,
    v1_records=200, v1_reps=2, breakdown_sizes=[32], sequential_start=False, skip_servers=("nolog", "workers2"),
    mode="quick",
)
QUICK_SCENARIOS = ["predict", "batch", "arrow_big", "mixed", "multimodel", "breakdown"]


def _commit(root: Path | None) -> str:
    import subprocess

    done = subprocess.run(["git", "-C", str(root or Path(__file__).parent), "log", "-1", "--format=%h %s"],
                          capture_output=True, text=True)
    stamp = Path(root or ".") / ".bench-commit"  # an exported tree (git archive) names its commit here
    return done.stdout.strip()[:100] or (stamp.read_text().strip() if stamp.exists() else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke: seconds of load, one concurrency")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where results.md and PNGs go")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temporary store, logs and server output")
    parser.add_argument("--only", default="", help="comma-separated scenarios (default: all; see bench/scenarios.py)")
    parser.add_argument("--root", type=Path, default=None,
                        help="serve the project checkout at this path instead of this one (its .venv if it has one)")
    parser.add_argument("--parallel-start", action="store_true",
                        help="start the servers concurrently (faster on a busy machine; start-up times then inflate)")
    parser.add_argument("--mlserver-parallel-workers", type=int, default=None, metavar="N",
                        help="MLServer's parallel_workers (default 0, as issue 21 measured it: inference in the server "
                             "process; -1 = MLServer's own default, 1)")
    parser.add_argument("--doors-root", type=Path, default=None,
                        help="serve issue 11's V2 and Arrow variants from this checkout (a second service server), "
                             "when --root's checkout lacks them")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.root = args.root.resolve() if args.root else None
    args.doors_root = args.doors_root.resolve() if args.doors_root else None
    cfg = QUICK if args.quick else FULL
    if args.parallel_start:
        cfg = replace(cfg, sequential_start=False)
    if args.mlserver_parallel_workers is not None:
        cfg = replace(cfg, mlserver_parallel_workers=None if args.mlserver_parallel_workers < 0
                      else args.mlserver_parallel_workers)
    from bench.scenarios import SCENARIOS

    chosen = [s for s in args.only.split(",") if s] or (QUICK_SCENARIOS if args.quick else list(SCENARIOS))
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    from bench import external

    external.require()  # before anything starts: a bench without its cross-check is what issue 21 was about
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
    if args.root:
        # In-process baselines (raw pipeline, metrics and log cost) run the served checkout's own code too; bench's
        # modules stay this checkout's (`bench` is imported already; the load process started before this).
        sys.path.insert(0, str(args.root.resolve()))
    running = []
    try:
        from bench import scenarios

        results = scenarios.run_all(cfg, chosen, workdir, loader, running, log=print, root=args.root,
                                    doors_root=args.doors_root)
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
        "scenarios": chosen,
        "root": str(args.root or "."),
        "commit": _commit(args.root),
        "doors_root": str(args.doors_root) if args.doors_root else None,
        "doors_commit": _commit(args.doors_root) if args.doors_root else None,
        "mlserver_parallel_workers": cfg.mlserver_parallel_workers,
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
        "load_average_start_end": results.pop("load_average"),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    from bench.report import target_lines, write_report
    from bench.targets import busy_machine

    judged = write_report(results, cfg, args.out)
    print("\n".join(target_lines(judged, results["meta"]["mode"] == "quick", busy_machine(results))))
    print(f"wrote {args.out}/results.md in {results['meta']['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
