"""Explanation figures (issue 25), each measured side by side in one run, with the load average stated:

- one record on POST /v1/explain: p50 and p99 of sequential calls (cross-checked with `hey` when Debian's hey is
  installed, else `curl`);
- 1,000 records in one call (median of --big-reps calls, cross-checked with `curl`);
- the cost to /predict: its throughput at concurrency --concurrency alone, then beside explanation traffic (two
  clients posting one-record explanations back to back; one client posting 1,000-record explanations back to back),
  rounds alternating; against one server per --nice value (EXPLAIN_NICE: 19, 10 and 0 by default), so the lane's
  priority is measured, not assumed. Target: /predict keeps at least 95% of its throughput.

    .venv/bin/python -m bench.bench_explain [--seconds 5] [--rounds 3] [--out bench/results]

Uses the store BENTOML_HOME points at (trains purchase_gbm and purchase_lr if it lacks them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

from bench.harness import Server, train_if_missing
from bench.load import LoadProcess, Round, pooled
from bench.measure import order, post
from training.data import generate_purchase
from training.schema import PURCHASE

JSON = {"Content-Type": "application/json"}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Stream:
    """`clients` threads posting one body back to back until stopped; answers counted by status."""

    def __init__(self, url: str, body: bytes, clients: int):
        self.url, self.body = url, body
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=600) as client:
            while not self._stop.is_set():
                try:
                    status = client.post(self.url, content=self.body, headers=JSON).status_code
                except httpx.HTTPError:
                    status = -1
                self.statuses[status] = self.statuses.get(status, 0) + 1

    def __enter__(self) -> "Stream":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def latencies(url: str, body: bytes, count: int) -> list[float]:
    with httpx.Client(timeout=600) as client:
        post(client, url, body)  # warm: the explainer of this version is built on the first call
        return [post(client, url, body)[0] for _ in range(count)]


def cross_check(url: str, body: bytes, count: int, workdir: Path, curl: bool = False) -> dict:
    """The same calls from an external client: hey when installed (and not `curl`), else curl's time_total."""
    path = workdir / "body.json"
    path.write_bytes(body)
    if shutil.which("hey") and not curl:
        out = subprocess.run(["hey", "-n", str(count), "-c", "1", "-m", "POST", "-T", "application/json", "-D",
                              str(path), url], capture_output=True, text=True, timeout=900).stdout
        lines = [line.strip() for line in out.splitlines()]
        pick = {line.split(" in ")[0].strip("% "): float(line.split(" in ")[1].split()[0]) * 1e3
                for line in lines if line.startswith(("50%", "95%", "99%")) and " in " in line}
        # hey lists only the percentiles its sample has: a run of 100 calls stops at 95%.
        return {"tool": "hey", "calls": count, **{f"p{q}_ms": pick[q] for q in ("50", "95", "99") if q in pick}}
    times = []
    for _ in range(count):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "-X", "POST", "-H",
                              "Content-Type: application/json", "--data-binary", f"@{path}", url],
                             capture_output=True, text=True, timeout=900).stdout
        times.append(float(out) * 1e3)
    return {"tool": "curl", "p50_ms": float(np.median(times)), "p99_ms": float(np.percentile(times, 99))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="each /predict load run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--single", type=int, default=200, help="sequential one-record calls")
    parser.add_argument("--big", type=int, default=1_000, help="records in the big call")
    parser.add_argument("--big-reps", type=int, default=3)
    parser.add_argument("--nice", type=int, nargs="+", default=[19, 10, 0],
                        help="EXPLAIN_NICE of each server compared (the first also gives the latency figures)")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    train_if_missing("purchase_gbm", "purchase_lr")
    records = generate_purchase(max(args.big, 512), seed=21)[PURCHASE.columns].to_dict("records")
    one = orjson.dumps({"records": records[:1]})
    big = orjson.dumps({"records": records[: args.big]})
    log = print
    command = "python -m bench.bench_explain " + " ".join(sys.argv[1:] if argv is None else argv)
    result: dict = {"command": command, "loadavg_before": loadavg()}
    workdir = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    for nice in args.nice:
        (workdir / f"nice{nice}").mkdir()
    servers = {nice: Server(workdir / f"nice{nice}", {"EXPLAIN_NICE": str(nice), "BATCH_MAX_LATENCY_MS": "20000"})
               for nice in args.nice}
    loader = LoadProcess()
    try:
        for server in servers.values():
            server.wait_until_up()
        main_server = servers[args.nice[0]]
        url = main_server.url + "/v1/explain"
        times = latencies(url, one, args.single)
        result["one_record"] = {"calls": len(times), "p50_ms": float(np.percentile(times, 50)) * 1e3,
                                "p99_ms": float(np.percentile(times, 99)) * 1e3, "loadavg": loadavg(),
                                "cross_check": cross_check(url, one, min(args.single, 100), workdir)}
        log(f"one record: p50 {result['one_record']['p50_ms']:.1f} ms  p99 {result['one_record']['p99_ms']:.1f} ms  "
            f"({result['one_record']['cross_check']})  load {loadavg()}")
        big_times = latencies(url, big, args.big_reps)
        result["big_call"] = {"records": args.big, "median_s": float(np.median(big_times)), "calls": len(big_times),
                              "per_record_ms": float(np.median(big_times)) * 1e3 / args.big, "loadavg": loadavg(),
                              "cross_check_curl_s": cross_check(url, big, 1, workdir, curl=True)["p50_ms"] / 1e3}
        log(f"{args.big} records in one call: {result['big_call']['median_s']:.2f} s (curl: "
            f"{result['big_call']['cross_check_curl_s']:.2f} s)  load {loadavg()}")

        loader.set_bodies("one", [orjson.dumps(r) for r in records[:512]])
        variants = ["alone", "beside one-record explanations", f"beside {args.big}-record explanations"]
        rounds: dict[tuple[int, str], list[Round]] = {}
        explained: dict[tuple[int, str], dict[int, int]] = {}
        for server in servers.values():
            loader.run(server.url + "/predict", "one", args.concurrency, args.concurrency * 8, 1.0)  # warm
        for round_index in range(args.rounds):
            for nice in order(list(servers), round_index):
                server = servers[nice]
                for variant in order(variants, round_index):
                    stream = None
                    if variant != "alone":
                        body, clients = (one, 2) if variant.startswith("beside one") else (big, 1)
                        stream = Stream(server.url + "/v1/explain", body, clients)
                    if stream is None:
                        run = loader.run(server.url + "/predict", "one", args.concurrency, 10**9, args.seconds)
                    else:
                        with stream:
                            time.sleep(0.2)  # the explanation traffic is under way first
                            run = loader.run(server.url + "/predict", "one", args.concurrency, 10**9, args.seconds)
                        for status, count in stream.statuses.items():
                            explained.setdefault((nice, variant), {})
                            explained[(nice, variant)][status] = explained[(nice, variant)].get(status, 0) + count
                    rounds.setdefault((nice, variant), []).append(run.round())
        rows = []
        for nice in servers:
            alone = pooled(rounds[(nice, "alone")])["throughput"]
            for variant in variants:
                summed = pooled(rounds[(nice, variant)])
                row = {"server": f"EXPLAIN_NICE={nice}", **summed, "traffic": variant,
                       "throughput_vs_alone": summed["throughput"] / alone,
                       "explanations_answered": explained.get((nice, variant), {})}
                rows.append(row)
                log(f"  /predict c={args.concurrency} EXPLAIN_NICE={nice:<2} {variant:38} {row['throughput']:6.0f} req/s "
                    f"({row['throughput_vs_alone']:.3f}x)  p99 {row['p99_ms']:6.1f} ms  errors {row['errors']}  "
                    f"explanations {row['explanations_answered']}")
        result["predict_cost"] = {"concurrency": args.concurrency, "seconds": args.seconds, "rounds": args.rounds,
                                  "rows": rows, "loadavg": loadavg()}
    finally:
        loader.close()
        for server in servers.values():
            server.stop()
    result["loadavg_after"] = loadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "explain.json").write_text(json.dumps(result, indent=2))
    log(f"load average before {result['loadavg_before']}, after {result['loadavg_after']}; {out / 'explain.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
