"""Issue 21's diagnosis, reproducible: why the bench measured MLServer at 113.8 ms where curl measured 43-57 ms.

    python -m bench.flattery --reps 11

Starts MLServer twice on the same exported pipeline: as the bench started it until issue 21 (`OMP_NUM_THREADS=1`
set for it alone) and as it starts it now (the service's environment, libgomp's default threads). Times the same
10,000-row V2 body on each, alternating, with the bench's old client (httpx as it comes: it asks for gzip, deflate
and br, and MLServer's default GZip middleware then compresses the answer at level 9), the bench's client now
(`Accept-Encoding: identity`) and curl (asks for nothing). Beside the wall times, the CPU time MLServer's process
tree spent per call: it does not swell when other processes share the cores, so it shows the compression's cost
even on a busy machine. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psutil

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

AS_IT_COMES = {"Content-Type": "application/json"}  # httpx adds its own Accept-Encoding: gzip, deflate(, br, zstd)


def cpu_seconds(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flattery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args(argv)

    from bench import external, mlserver_peer
    from bench.measure import IDENTITY, write_body
    from bench.servers import private_store
    from training.data import generate_purchase
    from training.store import load_model

    external.require()
    workdir = Path(tempfile.mkdtemp(prefix="bench-flattery-"))
    os.environ["BENTOML_HOME"] = str(private_store(Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")), workdir))
    model = load_model("purchase_gbm:latest")
    body = orjson.dumps(mlserver_peer.v2_request(generate_purchase(args.rows, seed=7).drop(columns="purchased")))
    body_file = write_body(workdir, "v2.json", body)
    servers = {"before": mlserver_peer.start(model, workdir / "before", {"OMP_NUM_THREADS": "1"}),
               "now": mlserver_peer.start(model, workdir / "now")}
    load_start = os.getloadavg()
    try:
        for server in servers.values():
            server.wait_until_up()
        url = {name: s.url + f"/v2/models/{mlserver_peer.MODEL}/infer" for name, s in servers.items()}
        client = httpx.Client(timeout=600)

        def bench_client(headers):
            def call(u: str) -> float:
                started = time.perf_counter()
                response = client.post(u, content=body, headers=headers)
                response.read()
                if response.status_code != 200:
                    raise RuntimeError(f"{u} answered {response.status_code}")
                return time.perf_counter() - started
            return call

        clients = {"bench's old client (httpx as it comes)": bench_client(AS_IT_COMES),
                   "bench's client now (Accept-Encoding: identity)": bench_client(IDENTITY),
                   "curl": lambda u: external.curl(u, body_file, {"Content-Type": "application/json"})}
        variants = [(server, name) for server in servers for name in clients]
        wall: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
        cpu: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
        for variant in variants:  # warm-up
            clients[variant[1]](url[variant[0]])
        for rep in range(args.reps):
            for server, name in variants if rep % 2 == 0 else variants[::-1]:
                before = cpu_seconds(servers[server].process.pid)
                wall[(server, name)].append(clients[name](url[server]))
                cpu[(server, name)].append(cpu_seconds(servers[server].process.pid) - before)
        client.close()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    labels = {"before": "as the bench started it until issue 21 (OMP_NUM_THREADS=1)",
              "now": "as the bench starts it now (the service's environment)"}
    lines = [f"`python -m bench.flattery {' '.join(argv if argv is not None else sys.argv[1:])}`, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {args.rows:,} rows, median of {args.reps}; load average at the start "
             f"{', '.join(f'{x:.2f}' for x in load_start)}, at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
             "", "| MLServer | client | wall ms | MLServer CPU ms per call |", "|---|---|---|---|"]
    lines += [f"| {labels[server]} | {name} | {statistics.median(wall[(server, name)]) * 1e3:.1f} | "
              f"{statistics.median(cpu[(server, name)]) * 1e3:.0f} |" for server, name in variants]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
