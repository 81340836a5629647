"""Soak: steady concurrent load on /predict and /batch_predict for a fixed time; zero errors and bounded RSS.

    python -m bench.soak --seconds 300 --concurrency 32        # starts its own server in a temporary folder
    python -m bench.soak --url http://127.0.0.1:3000 --pid PID  # or soak a running one

RSS is summed over the server's whole process tree, sampled at the start (after warm-up), every 0.25 s and at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from training.data import generate_purchase


def tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)] if p.is_running())


@dataclass
class SoakResult:
    seconds: float
    concurrency: int
    requests: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    # The lowest RSS sampled (every 0.25 s) while the load ran: a leak raises it, a transient peak (a log segment
    # being compacted) does not.
    rss_floor_mb: float = 0.0

    @property
    def rss_growth(self) -> float:
        return self.rss_end_mb / self.rss_start_mb - 1 if self.rss_start_mb else 0.0


async def soak(url: str, seconds: float, concurrency: int, pid: int | None = None, seed: int = 7) -> SoakResult:
    records = generate_purchase(2_000, seed=seed).drop(columns="purchased").to_dict("records")
    result = SoakResult(seconds=seconds, concurrency=concurrency)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient, index: int, deadline: float) -> None:
        n = index
        while time.monotonic() < deadline:
            n += concurrency
            # Mostly single records (the batched path), every tenth call a 200-record batch.
            if n % 10 == 0:
                path, payload = "/batch_predict", {"records": records[n % 1_800 : n % 1_800 + 200]}
            else:
                path, payload = "/predict", records[n % len(records)]
            started = time.perf_counter()
            try:
                response = await client.post(path, json=payload)
                statuses[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - started)

    # An idle connection is dropped by the client before the server's keep-alive (uvicorn's 5 s) closes it: with
    # httpx's default of exactly 5 s, a request sent as the server closed the connection failed with ReadError
    # (2 of about 30,000 requests in 180 s at concurrency 32, in three of four runs; none with 2 s).
    limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client, i, time.monotonic() + min(2.0, seconds / 5)) for i in range(concurrency)))
        statuses.clear()
        latencies.clear()
        result.rss_start_mb = tree_rss(pid) / 1e6 if pid else 0.0
        deadline = time.monotonic() + seconds
        samples = [result.rss_start_mb]

        async def sample_rss() -> None:
            while pid and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                samples.append(tree_rss(pid) / 1e6)

        await asyncio.gather(sample_rss(), *(worker(client, i, deadline) for i in range(concurrency)))
        result.rss_end_mb = tree_rss(pid) / 1e6 if pid else 0.0
        result.rss_floor_mb = min([*samples, result.rss_end_mb])
    result.requests = sum(statuses.values())
    result.errors = result.requests - statuses.get("200", 0)
    result.statuses = dict(statuses)
    result.p50_ms, result.p99_ms = (float(np.percentile(latencies, q) * 1000) for q in (50, 99))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--url", help="a running service; default: start one")
    parser.add_argument("--pid", type=int, help="the running service's PID, for RSS")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    server = None
    if args.url is None:
        from bench.harness import Server

        server = Server(Path(tempfile.mkdtemp(prefix="soak-")), {}).wait_until_up()
        args.url, args.pid = server.url, server.process.pid
    try:
        result = asyncio.run(soak(args.url, args.seconds, args.concurrency, args.pid))
    finally:
        if server is not None:
            server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {**asdict(result), "rss_growth": round(result.rss_growth, 4)}
    (args.out / "soak.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
