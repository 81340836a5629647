"""What a 10,000-row request costs each server in CPU time, the figure a busy machine does not move much.

    python -m bench.cpu_per_call --reps 15                         # this checkout and MLServer
    python -m bench.cpu_per_call --before /tmp/main --reps 15      # and another checkout (e.g. `git archive main`)

On a shared machine wall times measure the neighbours (docs/benchmarks.md). This script times the same bodies on
each server, alternating, and also reads the CPU seconds each server's process tree spent per call (user +
system, every thread): what the request path costs, whatever the load. For each server: the V2 JSON body of issue
21 (MLServer's own columnar layout, `predict_proba` asked for), and on the service also `/batch_predict` with
records JSON and with an Arrow stream. MLServer runs unbatched (its default; the faster of the bench's two copies
for a lone request), at its defaults, and once more with `OMP_NUM_THREADS=1`: with its default policy libgomp's
second thread spins at every barrier, so on a busy machine MLServer's CPU per call counts spinning, and the
one-thread copy shows the work. Wall figures: the median and the minimum of the bench's client and of curl (the
minimum is the call that met the fewest neighbours). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

ARROW = "application/vnd.apache.arrow.stream"


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process tree's live threads, from each thread's schedstat (nanoseconds; psutil's
    cpu_times count clock ticks of 10 ms, as coarse as the differences measured here)."""
    import psutil

    total = 0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        for task in Path(f"/proc/{process.pid}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that ended meanwhile
    return total / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_per_call", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--before", type=Path, help="another checkout of the project to serve beside this one")
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the service's servers (this checkout's and --before's)")
    args = parser.parse_args(argv)

    from bench import external, mlserver_peer
    from bench.doors import arrow_bytes
    from bench.harness import Server
    from bench.measure import IDENTITY, write_body
    from bench.servers import MAX_RECORDS, private_store
    from training.data import generate_purchase
    from training.store import load_model

    external.require()
    workdir = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    os.environ["BENTOML_HOME"] = str(private_store(Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")), workdir))
    model = load_model("purchase_gbm:latest")
    frame = generate_purchase(args.rows, seed=7).drop(columns="purchased")
    bodies = {"v2": (orjson.dumps(mlserver_peer.v2_request(frame)), {"Content-Type": "application/json"}),
              "records": (orjson.dumps({"records": frame.to_dict("records")}), {"Content-Type": "application/json"}),
              "arrow": (arrow_bytes(frame), {"Content-Type": ARROW, "Accept": ARROW})}
    files = {name: write_body(workdir, name, body) for name, (body, _) in bodies.items()}
    env = {"MAX_RECORDS": str(MAX_RECORDS), "MAX_BODY_BYTES": str(256 * 2**20),
           **dict(item.split("=", 1) for item in args.env)}
    for name in ("service", "before"):
        (workdir / name).mkdir()
    servers: dict[str, object] = {"service": Server(workdir / "service", env)}
    if args.before:
        servers["before"] = Server(workdir / "before", env, root=args.before)
    if not args.no_mlserver:
        servers["mlserver"] = mlserver_peer.start(model, workdir / "mlserver")
        servers["mlserver_1thread"] = mlserver_peer.start(model, workdir / "mlserver1", {"OMP_NUM_THREADS": "1"})
    v2_path = f"/v2/models/{model.name}/infer"
    targets: list[tuple[str, str, str]] = []  # (server, door, url)
    for name, server in servers.items():
        if name.startswith("mlserver"):
            targets.append((name, "v2", f"{server.url}/v2/models/{mlserver_peer.UNBATCHED}/infer"))
        else:
            targets += [(name, "v2", server.url + v2_path), (name, "records", server.url + "/batch_predict"),
                        (name, "arrow", server.url + "/batch_predict")]
    load_start = os.getloadavg()
    wall: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    try:
        for server in servers.values():
            server.wait_until_up()
        client = httpx.Client(timeout=600)

        def bench_call(url: str, door: str) -> float:
            body, headers = bodies[door]
            started = time.perf_counter()
            response = client.post(url, content=body, headers={**IDENTITY, **headers})
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
            return time.perf_counter() - started

        tools: dict[str, Callable[[str, str], float]] = {
            "bench": bench_call, "curl": lambda url, door: external.curl(url, files[door], bodies[door][1])}
        for name, door, url in targets:  # warm-up
            bench_call(url, door)
        for rep in range(args.reps):
            for name, door, url in targets if rep % 2 == 0 else targets[::-1]:
                for tool in ("bench", "curl") if rep % 2 == 0 else ("curl", "bench"):
                    pid = servers[name].process.pid
                    before = cpu_seconds(pid)
                    wall.setdefault((name, door, tool), []).append(tools[tool](url, door))
                    cpu.setdefault((name, door), []).append(cpu_seconds(pid) - before)
        client.close()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    labels = {"service": "the service (this checkout)", "before": f"the service ({args.before})",
              "mlserver": "MLServer 1.7.1, defaults", "mlserver_1thread": "MLServer 1.7.1, OMP_NUM_THREADS=1"}
    doors = {"v2": "V2 JSON", "records": "records JSON", "arrow": "Arrow"}

    def ms(values: list[float], pick: Callable = statistics.median) -> str:
        return f"{pick(values) * 1e3:.1f}"

    lines = [f"`python -m bench.cpu_per_call {' '.join(argv if argv is not None else sys.argv[1:])}`, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {args.rows:,} rows, {args.reps} calls per tool; load average at the "
             f"start {', '.join(f'{x:.2f}' for x in load_start)}, at the end "
             f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs.", "",
             "| server | body | server CPU ms per call, median / mean | bench client ms, median / min | curl ms, median / min |",
             "|---|---|---|---|---|"]
    for name, door, _ in targets:
        bench_wall, curl_wall = wall[(name, door, "bench")], wall[(name, door, "curl")]
        lines.append(f"| {labels[name]} | {doors[door]} | {ms(cpu[(name, door)])} / {ms(cpu[(name, door)], statistics.mean)} | {ms(bench_wall)} / "
                     f"{ms(bench_wall, min)} | {ms(curl_wall)} / {ms(curl_wall, min)} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
