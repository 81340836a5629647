"""The servers of bench.run and its in-process scenarios (/v1/predict on shared inputs, the per-batch cost of
metrics and the log, OpenMP threads); the peer and contention scenarios are in bench/peers.py and
bench/contention.py. Every comparison alternates its variants round by round (A B C, then C B A, ...) so that the
noise of a shared machine falls on all of them alike; results are medians or pooled percentiles."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench.cpu import CoreUse
from bench.load import LoadProcess
from bench.measure import Loads, order, post
from bench.servers import (MAX_BODY_BYTES, MAX_RECORDS, Running, add_versions, start_bento, start_ceiling,
                           start_mlserver, start_reference, tree_rss)

# The scenarios and the servers each needs; bench.run starts the union of what the chosen scenarios need.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "predict": ("service", "mlserver", "ceiling", "reference"),
    "batch": ("service", "mlserver", "reference", "nolog"),
    "arrow_big": ("service",),
    "mixed": ("service",),
    "workers": ("service", "workers2", "ceiling", "ceiling2"),
    "multimodel": ("service",),
    "breakdown": (),
    "threads": (),
}


def scenario_multimodel(cfg, servers, records: list[dict], models, validator, log: Callable) -> dict:
    from bench import inprocess

    versions = servers["_versions"]
    inputs = records[: cfg.v1_records]
    items = {
        1: [{"model_name": "purchase_gbm"}],
        2: [{"model_name": "purchase_gbm"}, {"model_name": "purchase_lr"}],
        4: [{"model_name": "purchase_gbm"}, {"model_name": "purchase_lr"},
            {"model_name": "purchase_gbm", "model_version": versions["purchase_gbm"][1]},
            {"model_name": "purchase_lr", "model_version": versions["purchase_lr"][1]}],
    }
    bodies = {k: orjson.dumps({"inputs": inputs, "predictions": v}) for k, v in items.items()}
    frame = validator.batch_body(orjson.dumps({"records": inputs}))
    targets = ["v1_1", "v1_2", "v1_4", "raw_gbm", "raw_lr"]
    times: dict[str, list[float]] = {t: [] for t in targets}
    url = servers["service"].url + "/v1/predict"
    with httpx.Client(timeout=600) as client:
        for k, body in bodies.items():  # warm-up and correctness
            answer = post(client, url, body)[1].json()
            if [p["status"] for p in answer["predictions"]] != ["Success"] * k:
                raise RuntimeError(f"/v1/predict with {k} models failed: {str(answer)[:500]}")
        for round_index in range(cfg.v1_reps):
            for target in order(targets, round_index):
                if target.startswith("raw_"):
                    model = models["purchase_" + target[4:]]
                    times[target].append(inprocess.predict_time(model, frame))
                else:
                    times[target].append(post(client, url, bodies[int(target[3:])])[0])
    med = {t: float(np.median(v)) for t, v in times.items()}
    rows = []
    for k in (1, 2, 4):
        raw_extra = {1: 0.0, 2: med["raw_lr"], 4: 2 * med["raw_lr"] + med["raw_gbm"]}[k]
        extra = med[f"v1_{k}"] - med["v1_1"]
        rows.append({
            "models": k, "latency_ms": med[f"v1_{k}"] * 1e3, "extra_ms": extra * 1e3 if k > 1 else None,
            "raw_extra_predict_ms": raw_extra * 1e3 if k > 1 else None,
            "extra_over_raw": extra / raw_extra if k > 1 else None,
        })
        log(f"  /v1/predict {k} model(s): {med[f'v1_{k}'] * 1e3:.1f} ms" +
            (f"  extra {extra * 1e3:.1f} ms vs raw predict {raw_extra * 1e3:.1f} ms" if k > 1 else ""))
    return {"records": cfg.v1_records, "rows": rows, "raw_predict_ms": {"purchase_gbm": med["raw_gbm"] * 1e3,
                                                                        "purchase_lr": med["raw_lr"] * 1e3}}


def scenario_breakdown(cfg, workdir: Path, records: list[dict], models, validator, log: Callable) -> dict:
    from bench import inprocess

    out = {}
    for size in cfg.breakdown_sizes:
        frame = validator.batch_body(orjson.dumps({"records": records[:size]}))
        repeats = 30 if size <= 1_000 else 6
        stages = inprocess.score_breakdown(models["purchase_gbm"], frame, workdir / f"breakdown_{size}.jsonl", repeats)
        out[str(size)] = {k: v * 1e3 for k, v in stages.items()}
        log(f"  score() of {size} rows: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in stages.items()))
    return out


def scenario_threads(cfg, records: list[dict], models, validator, log: Callable) -> dict:
    """In-process: the model call with the library's default OpenMP threads (one per core, spinning at barriers:
    MLServer's setting) against one thread. Much slower with the default: the cores are oversubscribed."""
    from threadpoolctl import threadpool_limits

    frame = validator.batch_body(orjson.dumps({"records": records[: cfg.focus_size]}))
    model = models["purchase_gbm"]
    times: dict[str, list[float]] = {"default": [], "bounded": []}
    cpus = os.cpu_count() or 2
    for round_index in range(5):
        for variant in order(["default", "bounded"], round_index):
            with threadpool_limits(limits=cpus if variant == "default" else 1, user_api="openmp"):
                started = time.perf_counter()
                model.predict_proba(frame)
                times[variant].append(time.perf_counter() - started)
    out = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    log(f"  predict_proba of {cfg.focus_size} rows: default threads {out['default']:.1f} ms, one thread {out['bounded']:.1f} ms")
    return out


def start_servers(names: set[str], cfg, workdir: Path, running: list[Running], log: Callable,
                  root: Path | None = None, doors_root: Path | None = None) -> dict[str, Running]:
    """Start the named servers one after another (so start-up times are not inflated by each other)."""
    from bench import mlserver_peer

    versions = add_versions(("purchase_gbm", "purchase_lr"))
    (g0, g1), (l0, l1) = versions["purchase_gbm"], versions["purchase_lr"]
    served = f"purchase_gbm:{g0},purchase_lr:{l0},drive_stats_a:latest,drive_stats_b:latest,purchase_gbm:{g1},purchase_lr:{l1}"
    base = {"SERVED_MODELS": served, "MAX_RECORDS": str(MAX_RECORDS), "MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    envs = {"service": base, "nolog": {**base, "PREDICTION_LOG": "0"}, "workers2": {**base, "WORKERS": "2"},
            "doors": base}
    servers: dict[str, Running] = {}
    if "mlserver" in names and not mlserver_peer.is_installed():
        log(f"  skipped mlserver: {mlserver_peer.VENV} is missing (`python -m bench.mlserver_peer install`, "
            "which `make bench` runs)")
        names = names - {"mlserver"}

    def start(name: str) -> Running:
        if name in envs:
            return start_bento(name, workdir, envs[name], root=doors_root if name == "doors" else root)
        if name in ("ceiling", "ceiling2"):  # ceiling2: the framework's own WORKERS=2 figure beside the service's
            workers = {"WORKERS": "2"} if name == "ceiling2" else {}
            return start_ceiling(workdir, {"MAX_RECORDS": str(MAX_RECORDS), "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
                                           **workers}, name=name)
        if name == "mlserver":
            from training.store import load_model

            return start_mlserver(load_model(f"purchase_gbm:{g0}"), workdir, cfg.mlserver_parallel_workers)
        # The reference app with the same one-thread model calls: it differs from the service in its HTTP and
        # parsing path only.
        return start_reference(workdir, {"REFERENCE_MODEL": f"purchase_gbm:{g0}", "OMP_NUM_THREADS": "1"})

    def start_one(name: str) -> None:
        server = start(name)
        running.append(server)
        servers[name] = server
        log(f"  {name}: ready in {server.ready_s:.1f} s, RSS {server.rss_ready / 2**20:.0f} MiB")

    ordered = [n for n in ("service", "doors", "nolog", "workers2", "ceiling", "ceiling2", "mlserver", "reference")
               if n in names]
    if cfg.sequential_start:
        for name in ordered:
            start_one(name)
    else:  # quick mode: start-up times are not the point, the smoke's seconds are
        with ThreadPoolExecutor(len(ordered)) as pool:
            for future in [pool.submit(start_one, name) for name in ordered]:
                future.result()
    servers["_versions"] = versions  # type: ignore[assignment]
    return servers


def run_all(cfg, chosen: list[str], workdir: Path, loader: LoadProcess, running: list[Running],
            log: Callable = print, root: Path | None = None, doors_root: Path | None = None) -> dict[str, Any]:
    from bench import contention, doors, peers
    from serving.codecs.records import purchase_validator
    from training.data import generate_purchase
    from training.store import load_model

    load_start = os.getloadavg()
    log("starting servers")
    needed = {s for name in chosen for s in SCENARIOS[name]} - set(cfg.skip_servers)
    if doors_root and needed & {s for name in ("batch", "arrow_big") if name in chosen for s in SCENARIOS[name]}:
        needed.add("doors")  # issue 11's V2 and Arrow doors, served from another checkout
    servers = start_servers(needed, cfg, workdir, running, log, root, doors_root)
    versions = servers["_versions"]
    models = {name: load_model(f"{name}:{versions[name][0]}") for name in ("purchase_gbm", "purchase_lr")}
    validator = purchase_validator(MAX_RECORDS)
    frame = generate_purchase(max(cfg.focus_size, cfg.v1_records), seed=7).drop(columns="purchased")
    records = frame.to_dict("records")
    gbm = models["purchase_gbm"]
    loads = Loads(loader, workdir)
    steps: dict[str, tuple[str, Callable[[], dict]]] = {
        "predict": (f"/predict at concurrency {cfg.focus_concurrency}: service vs MLServer vs ceiling vs reference app",
                    lambda: peers.scenario_predict(cfg, servers, loads, frame, log)),
        "batch": (f"{cfg.focus_size:,} rows in one request, every door",
                  lambda: peers.scenario_batch(cfg, servers, frame, gbm, validator, workdir, log)),
        "arrow_big": (f"{cfg.big_rows:,} rows as Arrow in one request",
                      lambda: doors.scenario_arrow_big(cfg, servers, frame, gbm, log)),
        "mixed": (f"mixed load: /predict at concurrency {cfg.mixed_concurrency} alone vs beside "
                  f"{cfg.focus_size:,}-record batches", lambda: contention.scenario_mixed(cfg, servers, loads, frame, log)),
        "workers": ("WORKERS=2 vs WORKERS=1 (/predict)", lambda: contention.scenario_workers(cfg, servers, loads, frame, log)),
        "multimodel": ("/v1/predict with 1, 2, 4 models on shared inputs",
                       lambda: scenario_multimodel(cfg, servers, records, models, validator, log)),
        "breakdown": ("metrics and log cost per scored batch (in-process)",
                      lambda: scenario_breakdown(cfg, workdir, records, models, validator, log)),
        "threads": ("OpenMP default vs bounded (in-process)", lambda: scenario_threads(cfg, records, models, validator, log)),
    }
    results: dict[str, Any] = {"core_use": {}, "scenario_load": {}}
    trees = {"bench load process": loader.process.pid,
             **{name: server.pid for name, server in servers.items() if not name.startswith("_")}}
    for name in chosen:
        title, step = steps[name]
        log(f"{name}: {title}")
        results["scenario_load"][name] = os.getloadavg()[0]
        with CoreUse(trees) as use:
            results[name] = step()
        results["core_use"][name] = use.cores
        log("  cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in use.cores.items() if v >= 0.01))
    results["servers"] = []
    for name, server in servers.items():
        if name.startswith("_"):
            continue
        server.rss_after = tree_rss(server.pid)
        results["servers"].append({"name": name, "ready_s": server.ready_s, "rss_ready_mb": server.rss_ready / 2**20,
                                   "rss_after_mb": server.rss_after / 2**20})
    results["load_average"] = [list(load_start), list(os.getloadavg())]
    return results
