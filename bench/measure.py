"""How the bench measures, with its own clients and beside them the external tools (bench/external.py):

- load: `LoadTarget`s hit by the bench's aiohttp load process and by `hey`, round after round, the targets' order and
  the tools' order reversed every other round, so that the noise of a shared machine falls on all of them alike;
- single big requests: `Call`s timed by the bench's httpx client and by `curl`, alternating the same way.

Both sides of every pair send the same body from the same process tree and never ask for a compressed answer.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import external
from bench.load import LoadProcess, Round, pooled

TOOLS = ("bench", "external")  # the bench's own client, then the external tool (hey for load, curl for one call)
JSON = {"Content-Type": "application/json"}
# httpx asks for gzip, deflate and br unless told otherwise; MLServer then compresses, the service does not.
IDENTITY = {**JSON, "Accept-Encoding": "identity"}


def order(names: list[str], round_index: int) -> list[str]:
    return names if round_index % 2 == 0 else names[::-1]


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str] = IDENTITY) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.post(url, content=body, headers=headers)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed, response


def write_body(workdir: Path, name: str, body: bytes) -> Path:
    path = workdir / "bodies" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(body)
    return path


# --- load --------------------------------------------------------------------------------------------------------------

@dataclass
class LoadTarget:
    """One URL under load: the bench's bodies (cycled) by name in the load process, and hey's one body as a file."""

    name: str
    url: str
    bodies: list[bytes]
    body_file: Path


class Loads:
    """Runs `LoadTarget`s with either tool and keeps every round, by (target, tool)."""

    def __init__(self, loader: LoadProcess, workdir: Path):
        self.loader, self.workdir = loader, workdir
        self.rounds: dict[tuple[str, str], list[Round]] = {}
        self._sent: set[str] = set()

    def target(self, name: str, url: str, bodies: list[bytes]) -> LoadTarget:
        target = LoadTarget(name, url, bodies, write_body(self.workdir, f"load_{name}.json", bodies[0]))
        if name not in self._sent:
            self.loader.set_bodies(name, bodies)
            self._sent.add(name)
        return target

    def run(self, target: LoadTarget, tool: str, concurrency: int, seconds: float, requests: int,
            key: str | None = None) -> Round:
        """One round; kept under (key or target.name, tool) unless key is "" (a warm-up)."""
        if tool == "bench":
            result = self.loader.run(target.url, target.name, concurrency, requests, seconds).round()
        else:
            result = external.hey(target.url, target.body_file, concurrency, seconds)
        if key != "":
            self.rounds.setdefault((key or target.name, tool), []).append(result)
        return result

    def warm(self, targets: list[LoadTarget], concurrency: int, seconds: float) -> None:
        for target in targets:
            for tool in TOOLS:
                self.run(target, tool, concurrency, seconds, concurrency * 8, key="")

    def alternate(self, targets: list[LoadTarget], concurrency: int, rounds: int, seconds: float, requests: int,
                  around: Callable[[LoadTarget, str], AbstractContextManager] | None = None) -> None:
        """`rounds` rounds over the targets, each target loaded by both tools, orders reversed every other round;
        `around(target, tool)` wraps each round (to read the server before and after)."""
        by_name = {t.name: t for t in targets}
        for round_index in range(rounds):
            for name in order(list(by_name), round_index):
                for tool in order(list(TOOLS), round_index):
                    with around(by_name[name], tool) if around else nullcontext():
                        self.run(by_name[name], tool, concurrency, seconds, requests)

    def rows(self, names: list[str], **extra: dict) -> list[dict]:
        """One row per (name, tool) in `names` order: `pooled` figures plus the extra fields given per name."""
        return [{"server": name, "tool": tool, **pooled(self.rounds[(name, tool)]), **extra.get(name, {})}
                for name in names for tool in TOOLS if (name, tool) in self.rounds]


# --- single big requests ----------------------------------------------------------------------------------------------

@dataclass
class Call:
    """One kind of big request: over HTTP (url + body, checked once by `check`), or in process (`run`, bench only)."""

    name: str
    url: str = ""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: dict(IDENTITY))
    check: Callable[[httpx.Response], None] | None = None
    run: Callable[[], float] | None = None  # in process: returns seconds; nothing for curl to time
    body_file: Path | None = None


def time_calls(calls: list[Call], reps: int, workdir: Path) -> dict[str, dict[str, list[float]]]:
    """Warm each call up (and check its answer), then `reps` rounds: every call by the bench's client and by curl,
    call order and tool order reversed every other round. Returns seconds by call name and tool."""
    for call in calls:
        if call.run is None and call.body_file is None:
            call.body_file = write_body(workdir, f"call_{call.name}", call.body)
    times: dict[str, dict[str, list[float]]] = {c.name: {"bench": [], "external": []} for c in calls}
    by_name = {c.name: c for c in calls}
    with httpx.Client(timeout=600) as client:
        for call in calls:  # warm-up: connections, caches, lazy imports; and every answer checked once
            if call.run is not None:
                call.run()
                continue
            response = post(client, call.url, call.body, call.headers)[1]
            if call.check is not None:
                call.check(response)
            external.curl(call.url, call.body_file, call.headers)
        for round_index in range(reps):
            for name in order(list(by_name), round_index):
                call = by_name[name]
                if call.run is not None:
                    times[name]["bench"].append(call.run())
                    continue
                for tool in order(list(TOOLS), round_index):
                    if tool == "bench":
                        times[name]["bench"].append(post(client, call.url, call.body, call.headers)[0])
                    else:
                        times[name]["external"].append(external.curl(call.url, call.body_file, call.headers))
    return times


def medians_ms(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {name: {tool: statistics.median(v) * 1e3 for tool, v in by_tool.items() if v}
            for name, by_tool in times.items()}
