"""The bench's own closed-loop HTTP load generator on asyncio + aiohttp: `concurrency` clients send pre-encoded
bodies back to back until `requests` answers or `duration` seconds, whichever comes first. Loopback only.

The client runs in its own process (`LoadProcess`), so its CPU is not taken from the benchmark driver; on a 2-core
machine it still shares the cores with the server, the same way for every variant it compares. Its rounds, and
`hey`'s (bench/external.py), are summed up the same way: `Round` per run, `pooled` over rounds.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np


@dataclass
class LoadResult:
    concurrency: int
    ok: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def round(self) -> "Round":
        return Round(self.concurrency, self.ok, self.errors, self.elapsed, self.percentile(50), self.percentile(99),
                     {str(k): v for k, v in self.statuses.items()})


@dataclass
class Round:
    """One load round of either tool: answers by status, its wall time, and its own latency percentiles (seconds)."""

    concurrency: int
    ok: int
    errors: int
    elapsed: float
    p50: float
    p99: float
    statuses: dict[str, int] = field(default_factory=dict)


def pooled(rounds: list[Round]) -> dict:
    """Rounds of one tool against one server, summed up alike for both tools: throughput = answers / wall time over
    all rounds; p50 and p99 = the median of the rounds' own percentiles (hey reports percentiles, not latencies)."""
    statuses: dict[str, int] = {}
    for r in rounds:
        for status, count in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    elapsed = sum(r.elapsed for r in rounds)
    ok = sum(r.ok for r in rounds)
    return {"concurrency": rounds[0].concurrency, "rounds": len(rounds), "ok": ok,
            "errors": sum(r.errors for r in rounds), "statuses": statuses, "throughput": ok / elapsed if elapsed else 0.0,
            "p50_ms": float(np.median([r.p50 for r in rounds])) * 1e3,
            "p99_ms": float(np.median([r.p99 for r in rounds])) * 1e3,
            "round_throughput": [r.ok / r.elapsed if r.elapsed else 0.0 for r in rounds]}


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load goes to loopback only, not {host!r}")


async def _load(url: str, bodies: list[bytes], concurrency: int, requests: int, duration: float,
                timeout: float) -> LoadResult:
    import aiohttp

    result = LoadResult(concurrency)
    # aiohttp asks for gzip unless told otherwise; MLServer then compresses its answers (see bench/external.py)
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    sent = 0
    deadline = 0.0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def worker(session: "aiohttp.ClientSession", start: int) -> None:
        nonlocal sent
        i = start
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            body = bodies[i % len(bodies)]
            i += concurrency
            began = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except Exception:  # noqa: BLE001 - a dropped connection is an error of the run, counted
                result.errors += 1
                result.statuses[-1] = result.statuses.get(-1, 0) + 1
                continue
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.ok += 1
                result.latencies.append(time.perf_counter() - began)
            else:
                result.errors += 1

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
        result.elapsed = time.perf_counter() - started
    return result


def load(url: str, bodies: list[bytes], concurrency: int, requests: int, duration: float,
         timeout: float = 60.0) -> LoadResult:
    """Run the load in this process."""
    _check_loopback(url)
    return asyncio.run(_load(url, bodies, concurrency, requests, duration, timeout))


def _serve(conn) -> None:  # pragma: no cover - runs in the load process
    bodies: dict[str, list[bytes]] = {}
    while True:
        message = conn.recv()
        if message is None:
            return
        kind, payload = message
        if kind == "bodies":
            name, value = payload
            bodies[name] = value
            conn.send(True)
            continue
        url, name, concurrency, requests, duration, timeout = payload
        try:
            conn.send(load(url, bodies[name], concurrency, requests, duration, timeout))
        except BaseException as exc:  # noqa: BLE001
            conn.send(exc)


# spawn, not fork: the driver has OpenMP and BLAS threads by the time it needs a load process.
_CTX = mp.get_context("spawn")


class LoadProcess:
    """One long-lived load process: bodies are sent once, each run only names them."""

    def __init__(self) -> None:
        self._parent, child = _CTX.Pipe()
        self.process = _CTX.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()

    def set_bodies(self, name: str, bodies: list[bytes]) -> None:
        self._parent.send(("bodies", (name, bodies)))
        self._parent.recv()

    def run(self, url: str, name: str, concurrency: int, requests: int, duration: float,
            timeout: float = 60.0) -> LoadResult:
        _check_loopback(url)
        self._parent.send(("run", (url, name, concurrency, requests, duration, timeout)))
        answer = self._parent.recv()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        if self.process.is_alive():
            self._parent.send(None)
            self.process.join(timeout=10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
