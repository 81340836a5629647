"""py-spy of the service's worker process under load: where a request's time goes.

    python -m bench.profile --seconds 20 --concurrency 32 --out bench/results/profile          # /predict, c=32
    python -m bench.profile --scenario v2-10k --seconds 20 --out bench/results/profile-v2-10k  # big V2 calls

Starts `bentoml serve` (default settings, the trained store copied to a temporary home), warms it up, then loads it
while `py-spy record` samples the worker (not BentoML's supervisor), every thread of it (`--threads`). Scenarios:
`predict` loads `/predict` from a separate process at `--concurrency`; `v2-10k` posts one 10,000-row V2 body
(MLServer's columnar JSON asking for `predict_proba`, the body of issue 21) back to back from one client. Writes
`profile.speedscope.json` (open it at speedscope.app or in any speedscope viewer), `profile.txt` (py-spy's raw
collapsed stacks) and `top.md`: the shares of the worker's threads, the functions holding the most samples
(inclusive and self), and the frames issue 21 watched (`--watch`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.stacks import WATCH, summary

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")


def worker_pid(pid: int) -> int:
    """BentoML's worker: the descendant of `bentoml serve` that runs the service (`_bentoml_impl.worker`)."""
    import psutil

    for child in psutil.Process(pid).children(recursive=True):
        if any("worker" in part for part in child.cmdline()):
            return child.pid
    raise RuntimeError(f"no BentoML worker under pid {pid}")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process, by OS thread id (what py-spy prints as `thread (N)`)."""
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


class PredictLoad:
    """/predict at `concurrency` from the bench's load process."""

    def __init__(self, url: str, concurrency: int):
        import orjson

        from bench.load import LoadProcess
        from training.data import generate_purchase

        self.url, self.concurrency = url + "/predict", concurrency
        self.loader = LoadProcess()
        records = generate_purchase(512, seed=7).drop(columns="purchased").to_dict("records")
        self.loader.set_bodies("one", [orjson.dumps(r) for r in records])
        self.loader.run(self.url, "one", concurrency, concurrency * 20, 3.0)  # warm-up
        self.title = f"/predict, concurrency {concurrency}"

    def run(self, seconds: float) -> str:
        r = self.loader.run(self.url, "one", self.concurrency, 10**7, seconds)
        return (f"{r.throughput:.0f} req/s, p50 {r.percentile(50) * 1e3:.1f} ms, p99 {r.percentile(99) * 1e3:.1f} ms, "
                f"{r.errors} errors")

    def close(self) -> None:
        self.loader.close()


class BigV2Load:
    """One client posting the 10,000-row V2 body back to back (issue 21's profile)."""

    def __init__(self, url: str, rows: int = 10_000):
        import orjson

        from bench.doors import V2_PATH
        from bench.mlserver_peer import v2_request
        from training.data import generate_purchase

        self.url = url + V2_PATH
        self.body = orjson.dumps(v2_request(generate_purchase(rows, seed=7).drop(columns="purchased")))
        self.title = f"back-to-back {rows:,}-row V2 calls (MLServer's body), one client"
        for _ in range(3):
            self._call()

    def _call(self) -> float:
        from bench.measure import IDENTITY

        started = time.perf_counter()
        response = httpx.post(self.url, content=self.body, headers=IDENTITY, timeout=600)
        if response.status_code != 200:
            raise RuntimeError(f"{self.url} answered {response.status_code}: {response.text[:300]}")
        return time.perf_counter() - started

    def run(self, seconds: float) -> str:
        times = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            times.append(self._call())
        return f"{len(times)} calls, median {statistics.median(times) * 1e3:.1f} ms"

    def close(self) -> None:
        pass


def record(spy: list[str], load, seconds: int, lead: float = 1.0) -> str:
    """Run `spy` for `seconds` while `load` runs a little longer on a thread; the load's summary."""
    out: dict[str, str] = {}
    thread = threading.Thread(target=lambda: out.setdefault("load", load.run(seconds + 2 * lead)))
    thread.start()
    time.sleep(lead)
    subprocess.run([*spy, "--duration", str(seconds)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    thread.join()
    return out["load"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("predict", "v2-10k"), default="predict")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=32, help="clients of the predict scenario")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--watch", default=",".join(WATCH), help="comma-separated function names to report shares of")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile"))
    parser.add_argument("--root", type=Path, default=None, help="serve this project checkout instead of this one")
    parser.add_argument("--env", action="append", default=[], help="extra server setting, NAME=VALUE (repeatable)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from bench.servers import private_store, start_bento

    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    os.environ["BENTOML_HOME"] = str(private_store(Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")), workdir))
    env = dict(item.split("=", 1) for item in args.env)
    server = start_bento("profile", workdir, env, root=args.root)
    load = None
    try:
        load = PredictLoad(server.url, args.concurrency) if args.scenario == "predict" else BigV2Load(server.url)
        pid = worker_pid(server.pid)
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", str(args.rate),
               "--threads"]
        load_average = os.getloadavg()
        cpu_before, wall = thread_cpu(pid), time.perf_counter()
        during = record([*spy, "--nolineno", "--format", "raw", "--output", str(args.out / "profile.txt")], load,
                        args.seconds)
        cpu_after, wall = thread_cpu(pid), time.perf_counter() - wall
        cores = {tid: (seconds - cpu_before.get(tid, 0.0)) / wall for tid, seconds in cpu_after.items()}
        # a second, speedscope-format recording for viewing; the tables below are from the first
        record([*spy, "--format", "speedscope", "--output", str(args.out / "profile.speedscope.json")], load,
               min(args.seconds, 10))
    finally:
        if load is not None:
            load.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # the store's copy and the server's log; results are in --out
    lines = summary(args.out / "profile.txt", f"# py-spy of the worker under {load.title}",
                    tuple(n for n in args.watch.split(",") if n), cores)
    lines[1:1] = ["", f"`python -m bench.profile {' '.join(argv if argv is not None else sys.argv[1:])}`, "
                  f"{time.strftime('%Y-%m-%d %H:%M')}, load average at the start "
                  f"{', '.join(f'{x:.2f}' for x in load_average)}; py-spy {args.rate} samples/s for {args.seconds} s; "
                  f"the load meanwhile: {during}."]
    (args.out / "top.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
