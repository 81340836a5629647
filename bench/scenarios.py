"""The scenarios of bench.run. Every comparison alternates its variants round by round (A B C, then C B A, ...)
so that the noise of a shared machine falls on all of them alike; results are medians or pooled percentiles."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench.load import LoadProcess, LoadResult
from bench.servers import MAX_BODY_BYTES, MAX_RECORDS, Running, add_versions, start_bento, start_reference, tree_rss

JSON = {"Content-Type": "application/json"}


def _order(names: list[str], round_index: int) -> list[str]:
    return names if round_index % 2 == 0 else names[::-1]


def _batch_stats(url: str) -> dict[str, float]:
    """Counts and sums of the batch-size histograms for /predict: BentoML's `adaptive_batch_size` (per call of
    the batched function) and ours, `serving_batch_rows` (per scored batch): whether requests really batched."""
    text = httpx.get(url + "/metrics", timeout=30).text
    stats = {"bento_count": 0.0, "bento_sum": 0.0, "ours_count": 0.0, "ours_sum": 0.0}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if 'method_name="predict"' in name and name.startswith("bentoml_service_adaptive_batch_size_"):
            key = "bento_"
        elif 'endpoint="/predict"' in name and name.startswith("serving_batch_rows_"):
            key = "ours_"
        else:
            continue
        if "_count{" in name:
            stats[key + "count"] += float(value)
        elif "_sum{" in name:
            stats[key + "sum"] += float(value)
    return stats


def _mean_batch(before: dict[str, float], after: dict[str, float]) -> float:
    for prefix in ("bento_", "ours_"):
        count = after[prefix + "count"] - before[prefix + "count"]
        if count > 0:
            return (after[prefix + "sum"] - before[prefix + "sum"]) / count
    return float("nan")


def start_servers(cfg, workdir: Path, running: list[Running], log: Callable) -> dict[str, Running]:
    versions = add_versions(("purchase_gbm", "purchase_lr"))
    (g0, g1), (l0, l1) = versions["purchase_gbm"], versions["purchase_lr"]
    served = f"purchase_gbm:{g0},purchase_lr:{l0},drive_stats_a:latest,drive_stats_b:latest,purchase_gbm:{g1},purchase_lr:{l1}"
    base = {"SERVED_MODELS": served, "MAX_RECORDS": str(MAX_RECORDS), "MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    configs: dict[str, dict[str, str] | None] = {
        "on": {**base, "BATCHING": "1"},
        "off": {**base, "BATCHING": "0"},
        "nolog": {**base, "BATCHING": "1", "PREDICTION_LOG": "0"},
    }
    if cfg.threads_variant:
        # "before" of the OpenMP fix: libgomp's default (one thread per core), given explicitly.
        configs["threads_default"] = {**base, "BATCHING": "1", "OMP_NUM_THREADS": str(os.cpu_count() or 2)}
    # The reference app with the same one-thread model calls, so that it differs from the service in its HTTP
    # and parsing path only.
    configs["reference"] = None
    ref_env = {"REFERENCE_MODEL": f"purchase_gbm:{g0}", "OMP_NUM_THREADS": "1"}

    def start(name: str) -> Running:
        env = configs[name]
        server = start_reference(workdir, ref_env) if env is None else start_bento(name, workdir, env)
        log(f"  {name}: ready in {server.ready_s:.1f} s, RSS {server.rss_ready / 2**20:.0f} MiB")
        return server

    servers: dict[str, Running] = {}
    if cfg.sequential_start:
        for name in configs:
            servers[name] = start(name)
            running.append(servers[name])
    else:
        errors: list[BaseException] = []

        def start_one(name: str) -> None:
            try:
                server = start(name)
                servers[name] = server
                running.append(server)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=start_one, args=(name,)) for name in configs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    servers["_versions"] = versions  # type: ignore[assignment]
    return servers


def scenario_batching(cfg, servers, loader: LoadProcess, records: list[dict], log: Callable) -> dict:
    loader.set_bodies("one", [orjson.dumps(r) for r in records[:512]])
    out: dict[str, Any] = {"rows": []}
    for concurrency in cfg.concurrencies:
        names = ["on", "off"]
        if concurrency == cfg.focus_concurrency:
            names += ["nolog"] + (["threads_default"] if "threads_default" in servers else [])
        for name in names:  # warm-up: connections, the batcher's optimizer, caches
            loader.run(servers[name].url + "/predict", "one", concurrency, concurrency * 4, 1.0)
        pooled: dict[str, LoadResult] = {}
        batches_before = _batch_stats(servers["on"].url)
        for round_index in range(cfg.load_rounds):
            for name in _order(names, round_index):
                result = loader.run(servers[name].url + "/predict", "one", concurrency, cfg.load_requests, cfg.load_seconds)
                pooled[name] = pooled[name].merge(result) if name in pooled else result
        mean_batch = _mean_batch(batches_before, _batch_stats(servers["on"].url))
        for name in names:
            r = pooled[name]
            row = {
                "server": name, "concurrency": concurrency, "ok": r.ok, "errors": r.errors,
                "statuses": {str(k): v for k, v in r.statuses.items()},
                "throughput": r.throughput, "p50_ms": r.percentile(50) * 1e3, "p99_ms": r.percentile(99) * 1e3,
                "mean_batch": mean_batch if name == "on" else None,
            }
            out["rows"].append(row)
            log(f"  c={concurrency:<3} {name:16} {r.throughput:7.0f} req/s  p50 {row['p50_ms']:7.1f} ms  "
                f"p99 {row['p99_ms']:7.1f} ms  errors {r.errors}" + (f"  mean batch {mean_batch:.1f}" if name == "on" else ""))
    return out


def _post(client: httpx.Client, url: str, body: bytes) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.post(url, content=body, headers=JSON)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed, response


def scenario_batch_sizes(cfg, servers, records: list[dict], models, validator, log: Callable) -> dict:
    from bench import inprocess

    gbm = models["purchase_gbm"]
    rows = []
    stages: dict[int, dict[str, float]] = {}
    with httpx.Client(timeout=600) as client:
        for size in cfg.sizes:
            subset = records[:size]
            body = orjson.dumps({"records": subset})
            columnar = inprocess.columnar_body(subset)
            targets = ["service", "raw", "raw_columnar", "reference"]
            if size == cfg.focus_size:
                targets += ["service_nolog"] + (["service_threads_default"] if "threads_default" in servers else [])
            url = {
                "service": servers["on"].url, "reference": servers["reference"].url,
                "service_nolog": servers["nolog"].url,
                "service_threads_default": servers["threads_default"].url if "threads_default" in servers else None,
            }
            # correctness once: the service and the reference answer the same probabilities
            _, answer = _post(client, url["service"] + "/batch_predict", body)
            _, reference = _post(client, url["reference"] + "/batch_predict", body)
            ours = [p["predicted_purchase_probability"] for p in answer.json()["predictions"]]
            theirs = [p["predicted_purchase_probability"] for p in reference.json()["predictions"]]
            if len(ours) != size or not np.allclose(ours, theirs, rtol=0, atol=1e-12):
                raise RuntimeError(f"service and reference disagree at {size} records")
            inprocess.raw_pipeline(gbm, validator, body)  # warm-up of the in-process variants
            inprocess.columnar_pipeline(gbm, columnar, MAX_RECORDS)
            for target in targets[4:]:
                _post(client, url[target] + "/batch_predict", body)
            times: dict[str, list[float]] = {t: [] for t in targets}
            raw_stages: list[dict[str, float]] = []
            for round_index in range(cfg.size_reps[size]):
                for target in _order(targets, round_index):
                    if target == "raw":
                        measured = inprocess.raw_pipeline(gbm, validator, body)
                        raw_stages.append(measured)
                        times[target].append(measured["total"])
                    elif target == "raw_columnar":
                        times[target].append(inprocess.columnar_pipeline(gbm, columnar, MAX_RECORDS)["total"])
                    else:
                        times[target].append(_post(client, url[target] + "/batch_predict", body)[0])
            stages[size] = {k: float(np.median([s[k] for s in raw_stages])) for k in raw_stages[0]}
            row = {"records": size, "body_mb": len(body) / 2**20, "columnar_body_mb": len(columnar) / 2**20}
            row.update({f"{t}_ms": float(np.median(v)) * 1e3 for t, v in times.items()})
            rows.append(row)
            log("  " + "  ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return {"rows": rows, "raw_stages_ms": {str(k): {s: v * 1e3 for s, v in d.items()} for k, d in stages.items()}}


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
    url = servers["on"].url + "/v1/predict"
    with httpx.Client(timeout=600) as client:
        for k, body in bodies.items():  # warm-up and correctness
            answer = _post(client, url, body)[1].json()
            if [p["status"] for p in answer["predictions"]] != ["Success"] * k:
                raise RuntimeError(f"/v1/predict with {k} models failed: {str(answer)[:500]}")
        for round_index in range(cfg.v1_reps):
            for target in _order(targets, round_index):
                if target.startswith("raw_"):
                    model = models["purchase_" + target[4:]]
                    times[target].append(inprocess.predict_time(model, frame))
                else:
                    times[target].append(_post(client, url, bodies[int(target[3:])])[0])
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
    """In-process: the model call with the library's default OpenMP threads against the service's bound."""
    from threadpoolctl import threadpool_limits

    from contextlib import nullcontext

    from serving.predictor import bound_inference_threads

    frame = validator.batch_body(orjson.dumps({"records": records[: cfg.focus_size]}))
    model = models["purchase_gbm"]
    times: dict[str, list[float]] = {"default": [], "bounded": []}
    cpus = os.cpu_count() or 2
    for round_index in range(5):
        for variant in _order(["default", "bounded"], round_index):
            bound_inference_threads()  # this thread's setting from now on is the service's; "default" overrides it
            context = threadpool_limits(limits=cpus, user_api="openmp") if variant == "default" else nullcontext()
            with context:
                started = time.perf_counter()
                model.predict_proba(frame)
                times[variant].append(time.perf_counter() - started)
    out = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    log(f"  predict_proba of {cfg.focus_size} rows: default threads {out['default']:.1f} ms, bounded {out['bounded']:.1f} ms")
    return out


def run_all(cfg, workdir: Path, loader: LoadProcess, running: list[Running], log: Callable = print) -> dict[str, Any]:
    from bench import inprocess
    from serving.validation import purchase_validator
    from training.data import generate_purchase
    from training.store import load_model

    load_start = os.getloadavg()
    log("starting servers")
    servers = start_servers(cfg, workdir, running, log)
    versions = servers["_versions"]
    models = {name: load_model(f"{name}:{versions[name][0]}") for name in ("purchase_gbm", "purchase_lr")}
    validator = purchase_validator(MAX_RECORDS)
    records = generate_purchase(max(cfg.sizes), seed=7).drop(columns="purchased").to_dict("records")

    results: dict[str, Any] = {}
    log("scenario 1: adaptive batching on/off (/predict)")
    results["batching"] = scenario_batching(cfg, servers, loader, records, log)
    log("scenario 2/5: /batch_predict vs raw pipeline vs reference app")
    results["batch"] = scenario_batch_sizes(cfg, servers, records, models, validator, log)
    log("scenario 3: /v1/predict with 1, 2, 4 models on shared inputs")
    results["multimodel"] = scenario_multimodel(cfg, servers, records, models, validator, log)
    log("scenario 4: metrics and log cost per scored batch (in-process)")
    results["breakdown"] = scenario_breakdown(cfg, workdir, records, models, validator, log)
    log("threads: OpenMP default vs bounded (in-process)")
    results["threads"] = scenario_threads(cfg, records, models, validator, log)
    results["servers"] = []
    for name, server in servers.items():
        if name.startswith("_"):
            continue
        server.rss_after = tree_rss(server.pid)
        results["servers"].append({"name": name, "ready_s": server.ready_s, "rss_ready_mb": server.rss_ready / 2**20,
                                   "rss_after_mb": server.rss_after / 2**20})
    results["load_average"] = [list(load_start), list(os.getloadavg())]
    return results
