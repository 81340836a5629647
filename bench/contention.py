"""Kinds of traffic against each other (issues 10 and 21), and worker processes, each loaded by the bench's own
client and by `hey` (bench/measure.py):

- mixed load: `/predict` at concurrency 8 alone, then while 10,000-record `/batch_predict` calls stream beside it
  (one client in the bench's process, back to back), alternating round by round;
- `WORKERS=2` against `WORKERS=1`: single-record `/predict` throughput at the focus concurrency.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import orjson
import pandas as pd

from bench.measure import IDENTITY, TOOLS, Loads, order

WORKER_INDEX = re.compile(r'worker_index="(\d+)"')


class BatchStream:
    """Posts one big body to a URL back to back on a thread until stopped; counts answers by status."""

    def __init__(self, url: str, body: bytes):
        self.url, self.body = url, body
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=600) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, content=self.body, headers=IDENTITY)
                except httpx.HTTPError:  # counted like the load generator's dropped connections
                    self.statuses[-1] = self.statuses.get(-1, 0) + 1
                    continue
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                self.latencies.append(response.elapsed.total_seconds())

    def __enter__(self) -> "BatchStream":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def scenario_mixed(cfg, servers, loads: Loads, frame: pd.DataFrame, log: Callable) -> dict:
    server = servers["service"]
    batch_body = orjson.dumps({"records": frame.iloc[: cfg.focus_size].to_dict("records")})
    c = cfg.mixed_concurrency
    singles = [orjson.dumps(r) for r in frame.iloc[:512].to_dict("records")]
    target = loads.target("mixed_one", server.url + "/predict", singles)
    loads.warm([target], c, cfg.warm_seconds)
    streams: list[BatchStream] = []
    for round_index in range(cfg.load_rounds):
        for variant in order(["alone", "with_batches"], round_index):
            for tool in order(list(TOOLS), round_index):
                if variant == "alone":
                    loads.run(target, tool, c, cfg.load_seconds, cfg.load_requests, key=variant)
                    continue
                with BatchStream(server.url + "/batch_predict", batch_body) as stream:
                    loads.run(target, tool, c, cfg.load_seconds, cfg.load_requests, key=variant)
                streams.append(stream)
    batches = sum(sum(s.statuses.values()) for s in streams)
    bad = {k: v for s in streams for k, v in s.statuses.items() if k != 200}
    rows = loads.rows(["alone", "with_batches"])
    for row in rows:
        log(f"  /predict c={c} {row['server']:13} {row['tool']:8} {row['throughput']:6.0f} req/s  "
            f"p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  errors {row['errors']}")
    log(f"  beside it: {batches} batches of {cfg.focus_size:,} records answered" + (f", non-200: {bad}" if bad else ""))
    return {"concurrency": c, "rows": rows, "batches": batches, "batch_statuses": {str(k): v for k, v in bad.items()},
            "batch_records": cfg.focus_size}


def scenario_workers(cfg, servers, loads: Loads, frame: pd.DataFrame, log: Callable) -> dict:
    if "workers2" not in servers:
        return {"skipped": "no WORKERS=2 server in this mode"}
    bodies = [orjson.dumps(r) for r in frame.iloc[:512].to_dict("records")]
    c = cfg.focus_concurrency
    # The ceiling (a constant answer) at one and two workers: what BentoML's own path gains here from a second
    # worker while the load tool shares the cores, beside what the service gains.
    pairs = [("workers1", "service"), ("workers2", "workers2"), ("ceiling1", "ceiling"), ("ceiling2", "ceiling2")]
    pairs = [(name, server) for name, server in pairs if server in servers]
    ceiling_bodies = [orjson.dumps({"records": [r]}) for r in frame.iloc[:512].to_dict("records")]  # its input spec
    targets = [loads.target(name, servers[server].url + "/predict",
                            ceiling_bodies if server.startswith("ceiling") else bodies) for name, server in pairs]
    loads.warm(targets, c, cfg.warm_seconds)
    busiest: dict[tuple[str, str], list[float]] = {}

    @contextmanager
    def split(target, tool: str) -> Iterator[None]:
        """The busiest worker's share of one round's /predict records, on a two-worker server (a worker that has
        answered nothing yet has no line on /metrics: its share is 0)."""
        if target.name not in ("workers2", "ceiling2"):
            yield
            return
        base = target.url.removesuffix("/predict")
        before = worker_records(base)
        yield
        done = {worker: count - before.get(worker, 0) for worker, count in worker_records(base).items()}
        if sum(done.values()):
            busiest.setdefault((target.name, tool), []).append(round(max(done.values()) / sum(done.values()), 3))

    loads.alternate(targets, c, cfg.load_rounds, cfg.load_seconds, cfg.load_requests, around=split)
    rows = loads.rows([name for name, _ in pairs])
    for row in rows:
        shares = busiest.get((row["server"], row["tool"]))
        if shares:
            row["busiest_worker_share"] = shares
        log(f"  c={c} {row['server']:9} {row['tool']:8} {row['throughput']:6.0f} req/s  p50 {row['p50_ms']:6.1f} ms  "
            f"p99 {row['p99_ms']:6.1f} ms  errors {row['errors']}"
            + (f"  busiest worker {', '.join(f'{s:.0%}' for s in shares)} of each round" if shares else ""))
    return {"concurrency": c, "rows": rows}


def worker_records(base_url: str) -> dict[str, float]:
    """/predict records batched so far by each worker (BentoML's adaptive batch sizes, summed per `worker_index`)."""
    found: dict[str, float] = {}
    for line in httpx.get(base_url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("bentoml_service_adaptive_batch_size_sum{") and 'method_name="predict"' in line:
            worker = WORKER_INDEX.search(line)
            if worker:
                found[worker.group(1)] = found.get(worker.group(1), 0) + float(line.rsplit(" ", 1)[1])
    return found
