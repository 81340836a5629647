"""Lifecycle figures on a real server: a hot swap under load, and shadow scoring on against off.

    .venv/bin/python bench/bench_lifecycle.py [--seconds 8] [--concurrency 32]

Swap: /predict at concurrency 32 against a server following `purchase@production` (MODEL_REFRESH_SECONDS=1);
`python -m training.promote purchase_lr --stage production` runs mid-load; reported are the swap time (from the
stage book's write to the first answer by the new model), the non-200 answers, and the p99 latency of the
requests sent while the promotion ran and until the switch against the steady seconds before it. Then a
rollback, the same way.
Shadow: two servers, SHADOW_MODELS=purchase@candidate and none, loaded alternately in the same run; the ratio
of their p99s. The store is a private copy of the default one (the promotions must not move the user's aliases).

`hammer` (the load loop that records which model answered each request) is also what tests/test_lifecycle.py uses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class Answer:
    started: float  # time.time(): comparable with the stage book's modification time
    ended: float
    status: int
    model_name: str | None
    model_version: str | None
    detail: str | None = None  # the start of a non-200 answer's body


@dataclass
class Hammer:
    """`concurrency` clients posting `body` to `url` back to back on a thread of their own until `stop()`."""

    url: str
    body: bytes
    concurrency: int = 32
    headers: dict[str, str] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> "Hammer":
        self._thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._thread.join(timeout=60)
        return self.answers

    async def _run(self) -> None:
        import aiohttp

        headers = {"Content-Type": "application/json", **self.headers}
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def client() -> None:
                while not self._stop.is_set():
                    started = time.time()
                    try:
                        async with session.post(self.url, data=self.body, headers=headers) as response:
                            payload = await response.read()
                            status = response.status
                    except aiohttp.ClientError:
                        payload, status = b"{}", 0
                    try:
                        parsed = orjson.loads(payload) if status == 200 else {}
                    except orjson.JSONDecodeError:
                        parsed = {}
                    self.answers.append(Answer(started, time.time(), status, parsed.get("model_name"),
                                               parsed.get("model_version"), None if status == 200 else payload[:200].decode(errors="replace")))

            await asyncio.gather(*(client() for _ in range(self.concurrency)))


def p99(answers: list[Answer]) -> float:
    latencies = [a.ended - a.started for a in answers if a.status == 200]
    return float(np.percentile(latencies, 99)) if latencies else float("nan")


def switch_seconds(answers: list[Answer], since: float, to_model: str) -> float | None:
    """From `since` to the first answer started after it that came from `to_model`."""
    first = min((a.ended for a in answers if a.started >= since and a.model_name == to_model), default=None)
    return None if first is None else first - since


def book_changed(home: Path) -> float:
    """When the stage book was last written (time.time() scale): the moment a promotion took effect."""
    return (home / "models" / ".lifecycle-stages.json").stat().st_mtime


def private_store(source: Path, target: Path) -> Path:
    """A copy of a model store sharing the model files (hard links) but with its own stage book, history, rollouts
    and `latest` pointers (a model saved into the copy rewrites its name's `latest` file in place: a hard link would
    point the source store at a version it does not have)."""
    def copy(src: str, dst: str) -> None:
        name = Path(src).name
        if name.startswith((".lifecycle", ".rollout")) or name == "latest":
            shutil.copy2(src, dst)
        else:
            os.link(src, dst)

    shutil.copytree(source / "models", target / "models", copy_function=copy)
    (target / "bentos").mkdir(exist_ok=True)
    return target


def promote(home: Path, *args: str) -> None:
    env = {**os.environ, "BENTOML_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "training.promote", *args], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="steady load before each change, and after it")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    source = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    work = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
    home = private_store(source, work / "home")
    os.environ["BENTOML_HOME"] = str(home)
    from bench.harness import Server

    from training.schema import PURCHASE

    record = orjson.dumps({name: f.examples[0] for name, f in PURCHASE.record.model_fields.items()})
    servers = []
    for name in ("swap", "on", "off"):
        (work / name).mkdir()
    try:
        # A generous batcher deadline: on a busy machine 503s for overload would hide what the swap does.
        patient = {"BATCH_MAX_LATENCY_MS": "10000"}
        swap = Server(work / "swap", {**patient, "MODEL_REFRESH_SECONDS": "1"}).wait_until_up()
        servers.append(swap)
        for to_model, change in (("purchase_lr", ("purchase_lr", "--stage", "production")),
                                 ("purchase_gbm", ("--rollback", "purchase", "--stage", "production"))):
            hammer = Hammer(swap.url + "/predict", record, args.concurrency).start()
            time.sleep(args.seconds)
            steady_end = time.time()
            promote(home, *change)
            changed = book_changed(home)
            deadline = time.time() + 30
            while time.time() < deadline and switch_seconds(hammer.answers, changed, to_model) is None:
                time.sleep(0.2)
            time.sleep(args.seconds / 2)
            answers = hammer.stop()
            took = switch_seconds(answers, changed, to_model)
            before = [a for a in answers if a.started < steady_end]
            during = [a for a in answers if steady_end <= a.started <= changed + (took or 0)]
            non_200 = Counter(a.status for a in answers if a.status != 200)
            print(f"swap to {to_model}: answers switched {took:.2f}s after the stage book changed; "
                  f"{len(answers)} requests, non-200: {dict(non_200) or 0}; p99 during/before = "
                  f"{p99(during) * 1000:.1f}/{p99(before) * 1000:.1f} ms = {p99(during) / p99(before):.2f}x")
        swap.stop()

        shadow_on = Server(work / "on", {**patient, "SHADOW_MODELS": "purchase@candidate"}).wait_until_up()
        shadow_off = Server(work / "off", patient).wait_until_up()
        servers += [shadow_on, shadow_off]
        results: dict[str, list[Answer]] = {"on": [], "off": []}
        for _ in range(2):  # alternate, so both see the same neighbours' load
            for name, server in (("on", shadow_on), ("off", shadow_off)):
                hammer = Hammer(server.url + "/predict", record, args.concurrency).start()
                time.sleep(args.seconds / 2)
                results[name] += hammer.stop()
        on, off = p99(results["on"]), p99(results["off"])
        print(f"shadow on/off at concurrency {args.concurrency}: p99 {on * 1000:.1f}/{off * 1000:.1f} ms = {on / off:.2f}x; "
              f"throughput {len(results['on']) / len(results['off']):.2f}x")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
