"""The benchmark's servers and model store: a private copy of the store, the bench configurations of
`bentoml serve` (bench.harness.Server), the uvicorn reference app, and process-tree memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import httpx
import psutil

from bench.harness import ROOT, Server, free_port

# Room for the 100,000-row Arrow request of issue 11; the other scenarios stay far below.
MAX_RECORDS = 100_000
MAX_BODY_BYTES = 256 * 1024 * 1024


def private_store(source_home: Path, workdir: Path) -> Path:
    """A copy of the trained store, so extra model versions never touch the caller's store."""
    models = source_home / "models"
    needed = ("purchase_gbm", "purchase_lr", "drive_stats_a", "drive_stats_b")
    missing = [name for name in needed if not (models / name / "latest").exists()]
    if missing:
        raise SystemExit(f"models {missing} are not in {source_home}: run `python -m training.train` first")
    home = workdir / "bentoml_home"
    shutil.copytree(models, home / "models", symlinks=True)
    return home


def add_versions(names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """A second version of each model (the same estimator saved again), for four purchase-schema models on
    shared inputs; returns name -> (original version, new version). Uses the store BENTOML_HOME points at."""
    from training.store import load_model, save_model

    versions = {}
    for name in names:
        original = load_model(f"{name}:latest")
        metadata = {k: v for k, v in original.metadata.items() if k not in ("has_bound_dataset", "versions")}
        tag = save_model(name, original.estimator, labels={**original.labels, "bench_copy": "1"},
                         metadata=metadata, reference=original.reference(), bound=original.bound)
        versions[name] = (original.version, tag.split(":", 1)[1])
    return versions


def tree_sum(pid: int, measure) -> float:
    """`measure(process)` summed over a process and its descendants; processes that end meanwhile count nothing."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += measure(process)
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss(pid: int) -> int:
    """Sum of RSS over a process and its descendants, in bytes (shared pages of forked workers count twice)."""
    return tree_sum(pid, lambda process: process.memory_info().rss)


@dataclass
class Running:
    """A started server and what its start-up cost."""

    name: str
    url: str
    pid: int
    ready_s: float
    rss_ready: int
    stop: object = field(repr=False)
    rss_after: int = 0


def start_bento(name: str, workdir: Path, env: dict[str, str], timeout: float = 240, target: str = ".",
                root: Path | None = None) -> Running:
    """`bentoml serve target` from `root` (the project by default; the bench can point at another worktree)."""
    server_dir = workdir / name
    server_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    server = Server(server_dir, env, target=target, root=root)
    try:
        server.wait_until_up(timeout=timeout)
    except BaseException:
        server.stop()
        raise
    ready = time.perf_counter() - started
    return Running(name, server.url, server.process.pid, ready, tree_rss(server.process.pid), server.stop)


class ReferenceApp:
    """bench/reference_app.py under uvicorn (one process), on a free loopback port."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = workdir / "reference.out"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "bench.reference_app:app", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
                cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"reference app exited:\n{self.output.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"reference app not up in {timeout}s:\n{self.output.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _when_up(name: str, peer: Any, started: float) -> Running:
    """Wait for a started peer (it has url, process, wait_until_up and stop); stop it if it never comes up."""
    try:
        peer.wait_until_up()
    except BaseException:
        peer.stop()
        raise
    ready = time.perf_counter() - started
    return Running(name, peer.url, peer.process.pid, ready, tree_rss(peer.process.pid), peer.stop)


def start_reference(workdir: Path, env: dict[str, str]) -> Running:
    started = time.perf_counter()
    return _when_up("reference", ReferenceApp(workdir, env), started)


def start_ceiling(workdir: Path, env: dict[str, str], root: Path | None = None, name: str = "ceiling") -> Running:
    """bench/ceiling_service.py: the service's BentoML settings (WORKERS among them, from `env`), a constant answer,
    no model. The module is served as a copy on PYTHONPATH, so that with `root` (another checkout) it reads that
    checkout's service.py."""
    source = workdir / "ceiling_source"
    source.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "bench" / "ceiling_service.py", source / "bench_ceiling.py")
    path = os.pathsep.join(p for p in (str(source), os.environ.get("PYTHONPATH", "")) if p)
    return start_bento(name, workdir, {**env, "PYTHONPATH": path}, target="bench_ceiling:Ceiling", root=root)


def start_mlserver(model, workdir: Path, parallel_workers: int | None = 0) -> Running:
    """MLServer 1.7.1 serving `model` exported as one sklearn pipeline (bench/mlserver_peer.py)."""
    from bench import mlserver_peer

    started = time.perf_counter()
    return _when_up("mlserver", mlserver_peer.start(model, workdir, parallel_workers=parallel_workers), started)
