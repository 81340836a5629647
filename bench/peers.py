"""Peer comparisons of issues 10 and 11, all against the same exported `purchase_gbm`:

- `/predict` at concurrency 32: the service, MLServer (V2, one row), the FastAPI reference app, and the
  framework's ceiling (bench/ceiling_service.py);
- 10,000 rows in one request: our records JSON, the raw in-process pipeline, the reference app, MLServer's columnar
  V2 JSON, and (when the endpoints exist, bench/doors.py) our V2 endpoint with MLServer's very body, Arrow to
  /batch_predict and the raw pipeline on a DataFrame.

Every comparison alternates its variants round by round; each answer is checked once against the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from bench.doors import ARROW, JSON, V2_PATH, arrow_bytes, arrow_proba, probe_doors, v2_positive
from bench.load import LoadProcess, LoadResult



def order(names: list[str], round_index: int) -> list[str]:
    return names if round_index % 2 == 0 else names[::-1]


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str] = JSON) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.post(url, content=body, headers=headers)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed, response


def load_row(name: str, r: LoadResult, **extra: Any) -> dict[str, Any]:
    return {"server": name, "concurrency": r.concurrency, "ok": r.ok, "errors": r.errors,
            "statuses": {str(k): v for k, v in r.statuses.items()}, "throughput": r.throughput,
            "p50_ms": r.percentile(50) * 1e3, "p99_ms": r.percentile(99) * 1e3, **extra}


def batch_stats(url: str) -> dict[str, float]:
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


def mean_batch(before: dict[str, float], after: dict[str, float]) -> float:
    for prefix in ("bento_", "ours_"):
        count = after[prefix + "count"] - before[prefix + "count"]
        if count > 0:
            return (after[prefix + "sum"] - before[prefix + "sum"]) / count
    return float("nan")


# --- /predict at concurrency 32 ---------------------------------------------------------------------------------------

def scenario_predict(cfg, servers, loader: LoadProcess, frame: pd.DataFrame, log: Callable) -> dict:
    from bench.mlserver_peer import v2_request

    records = frame.iloc[:512].to_dict("records")
    bodies = {
        "service": [orjson.dumps(r) for r in records],
        "reference": [orjson.dumps(r) for r in records],
        "ceiling": [orjson.dumps({"records": [r]}) for r in records],
        "mlserver": [orjson.dumps(v2_request(frame.iloc[i:i + 1])) for i in range(len(records))],
    }
    paths = {"service": "/predict", "reference": "/predict", "ceiling": "/predict", "mlserver": V2_PATH}
    names = [n for n in ("service", "mlserver", "ceiling", "reference") if n in servers]
    for name in names:
        loader.set_bodies("predict_" + name, bodies[name])
    # correctness once: the same record gets the same probability from the service and MLServer
    one = httpx.post(servers["service"].url + "/predict", content=bodies["service"][0], headers=JSON, timeout=60).json()
    if "mlserver" in servers:
        theirs = v2_positive(httpx.post(servers["mlserver"].url + V2_PATH, content=bodies["mlserver"][0],
                                        headers=JSON, timeout=60).json())
        if abs(theirs[0] - one["predicted_purchase_probability"]) > 1e-12:
            raise RuntimeError(f"/predict and MLServer disagree: {one} vs {theirs}")
    c = cfg.focus_concurrency
    url = {n: servers[n].url + paths[n] for n in names}
    for name in names:  # warm-up: connections, the batchers, caches
        loader.run(url[name], "predict_" + name, c, c * 8, 2.0)
    pooled: dict[str, LoadResult] = {}
    before = batch_stats(servers["service"].url)
    for round_index in range(cfg.load_rounds):
        for name in order(names, round_index):
            result = loader.run(url[name], "predict_" + name, c, cfg.load_requests, cfg.load_seconds)
            pooled[name] = pooled[name].merge(result) if name in pooled else result
    batch = mean_batch(before, batch_stats(servers["service"].url))
    rows = []
    for name in names:
        row = load_row(name, pooled[name], mean_batch=batch if name == "service" else None)
        rows.append(row)
        log(f"  c={c:<3} {name:10} {row['throughput']:7.0f} req/s  p50 {row['p50_ms']:7.1f} ms  "
            f"p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}")
    return {"concurrency": c, "rows": rows}


# --- 10,000 rows in one request ---------------------------------------------------------------------------------------

def scenario_batch(cfg, servers, frame: pd.DataFrame, model, validator, log: Callable) -> dict:
    """All the ways of sending `cfg.focus_size` rows, alternating; medians of sequential requests (keep-alive)."""
    from bench import inprocess
    from bench.mlserver_peer import v2_request

    subset = frame.iloc[: cfg.focus_size].reset_index(drop=True)
    records_body = orjson.dumps({"records": subset.to_dict("records")})
    v2_body = orjson.dumps(v2_request(subset))
    arrow_body = arrow_bytes(subset)
    service = servers["service"].url
    door_url = servers["doors"].url if "doors" in servers else service  # --doors-root: V2 and Arrow from there
    doors = probe_doors(door_url, frame)
    skipped = {door: reason for door, reason in doors.items() if reason}
    for door, reason in skipped.items():
        log(f"  skipped {door}: {reason}")
    expected = model.predict_proba(subset)
    arrow_headers = {"Content-Type": ARROW, "Accept": ARROW}

    def call(target: str, client: httpx.Client) -> tuple[float, np.ndarray | None]:
        if target == "service":
            t, r = post(client, service + "/batch_predict", records_body)
            return t, np.array([p["predicted_purchase_probability"] for p in orjson.loads(r.content)["predictions"]])
        if target == "service_nolog":
            return post(client, servers["nolog"].url + "/batch_predict", records_body)[0], None
        if target == "reference":
            t, r = post(client, servers["reference"].url + "/batch_predict", records_body)
            return t, np.array([p["predicted_purchase_probability"] for p in orjson.loads(r.content)["predictions"]])
        if target == "mlserver_v2":
            t, r = post(client, servers["mlserver"].url + V2_PATH, v2_body)
            return t, v2_positive(orjson.loads(r.content))
        if target == "service_v2":
            t, r = post(client, door_url + V2_PATH, v2_body)
            return t, v2_positive(orjson.loads(r.content))
        if target == "service_arrow":
            t, r = post(client, door_url + "/batch_predict", arrow_body, arrow_headers)
            return t, arrow_proba(r.content)
        if target == "raw":
            return inprocess.raw_pipeline(model, validator, records_body)["total"], None
        if target == "raw_dataframe":
            return inprocess.dataframe_pipeline(model, subset)["total"], None
        raise KeyError(target)

    targets = ["service", "raw", "reference"]
    targets += ["mlserver_v2"] if "mlserver" in servers else []
    targets += ["service_nolog"] if "nolog" in servers else []
    targets += [] if "v2" in skipped else ["service_v2"]
    targets += ["raw_dataframe"] + ([] if "arrow" in skipped else ["service_arrow"])
    times: dict[str, list[float]] = {t: [] for t in targets}
    with httpx.Client(timeout=600) as client:
        if "arrow" not in skipped:  # the project's own client helper, end to end, once
            from serving.client import predict_arrow

            answer = predict_arrow(door_url, subset, client=client)
            if not np.allclose(answer["predicted_purchase_probability"].to_numpy(), expected, rtol=0, atol=1e-9):
                raise RuntimeError("serving.client.predict_arrow disagrees with the model")
        for target in targets:  # warm-up, and every answer checked against the model once
            _, proba = call(target, client)
            if proba is not None and (len(proba) != len(subset) or not np.allclose(proba, expected, rtol=0, atol=1e-9)):
                raise RuntimeError(f"{target} disagrees with the model on {len(subset)} rows")
        for round_index in range(cfg.size_reps[cfg.focus_size]):
            for target in order(targets, round_index):
                times[target].append(call(target, client)[0])
    medians = {t: float(np.median(v)) * 1e3 for t, v in times.items()}
    log("  " + "  ".join(f"{t} {v:.1f} ms" for t, v in medians.items()))
    return {"records": len(subset), "median_ms": medians, "skipped": skipped,
            "body_mb": {"records_json": len(records_body) / 2**20, "v2_json": len(v2_body) / 2**20,
                        "arrow": len(arrow_body) / 2**20}}
