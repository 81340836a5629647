"""Peer comparisons of issues 10 and 11, all against the same exported `purchase_gbm`:

- `/predict` at concurrency 32: the service, MLServer (V2, one row), the FastAPI reference app, and the
  framework's ceiling (bench/ceiling_service.py);
- 10,000 rows in one request: our records JSON, the raw in-process pipeline, the reference app, MLServer's columnar
  V2 JSON, and (when the endpoints exist) our V2 endpoint with MLServer's very body, Arrow to /batch_predict and
  the raw pipeline on a DataFrame;
- 100,000 rows as Arrow in one request: latency and the server's peak RSS.

Every comparison alternates its variants round by round; each answer is checked once against the model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from bench.load import LoadProcess, LoadResult
from bench.servers import MAX_RECORDS, tree_rss

JSON = {"Content-Type": "application/json"}
ARROW = "application/vnd.apache.arrow.stream"
V2_PATH = "/v2/models/purchase_gbm/infer"


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


# --- the optional doors of issue 11 ----------------------------------------------------------------------------------

def arrow_bytes(frame: pd.DataFrame) -> bytes:
    from serving.client import to_arrow  # the project's client helper (issue 11)

    return to_arrow(frame)


def arrow_proba(body: bytes) -> np.ndarray:
    from serving.client import from_arrow

    return from_arrow(body)["predicted_purchase_probability"].to_numpy()


def probe_doors(url: str, frame: pd.DataFrame) -> dict[str, str | None]:
    """Which of issue 11's doors this server has: None where it answers, else the printed reason to skip."""
    from bench.mlserver_peer import v2_request

    small = frame.iloc[:3]
    out: dict[str, str | None] = {}
    response = httpx.post(url + V2_PATH, content=orjson.dumps(v2_request(small)), headers=JSON, timeout=60)
    out["v2"] = None if response.status_code == 200 else (
        f"POST {V2_PATH} answered {response.status_code}: the V2 endpoint is not in this build")
    response = httpx.post(url + "/batch_predict", content=arrow_bytes(small),
                          headers={"Content-Type": ARROW, "Accept": ARROW}, timeout=60)
    out["arrow"] = None if response.status_code == 200 else (
        f"an Arrow body to /batch_predict answered {response.status_code}: Arrow input is not in this build")
    return out


def v2_positive(answer: dict) -> np.ndarray:
    """The positive-class probability from a V2 answer: ours is [rows] or [rows, 1], MLServer's [rows, 2]."""
    output = next(o for o in answer["outputs"] if o["name"] == "predict_proba")
    data = np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])
    return data[:, 1] if data.ndim == 2 and data.shape[1] == 2 else data.reshape(-1)


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


# --- 100,000 rows as Arrow ---------------------------------------------------------------------------------------------

class PeakRSS:
    """Samples a process tree's RSS every 20 ms on a thread; `peak` is the highest seen."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def scenario_arrow_big(cfg, servers, frame: pd.DataFrame, model, log: Callable) -> dict:
    rows = cfg.big_rows
    server = servers.get("doors", servers["service"])
    reason = probe_doors(server.url, frame)["arrow"]
    if reason:
        log(f"  skipped: {reason}")
        return {"rows": rows, "skipped": reason}
    big = pd.concat([frame] * (rows // len(frame) + 1), ignore_index=True).iloc[:rows]
    body = arrow_bytes(big)
    headers = {"Content-Type": ARROW, "Accept": ARROW}
    latencies, peaks = [], []
    with httpx.Client(timeout=600) as client:
        for rep in range(cfg.big_reps):
            before = tree_rss(server.pid)
            with PeakRSS(server.pid) as sampler:
                elapsed, response = post(client, server.url + "/batch_predict", body, headers)
            if rep == 0:
                proba = arrow_proba(response.content)
                if not np.allclose(proba, model.predict_proba(big), rtol=0, atol=1e-9):
                    raise RuntimeError(f"Arrow /batch_predict disagrees with the model on {rows} rows")
            latencies.append(elapsed)
            peaks.append((before, sampler.peak))
        over_limit = None
        if rows == MAX_RECORDS:  # one row over the servers' MAX_RECORDS: refused, not scored
            over = arrow_bytes(pd.concat([big, big.iloc[:1]], ignore_index=True))
            refused = client.post(server.url + "/batch_predict", content=over, headers=headers)
            over_limit = {"rows": rows + 1, "status": refused.status_code, "answer": refused.text[:200]}
    out = {"rows": rows, "body_mb": len(body) / 2**20, "latency_ms": [t * 1e3 for t in latencies],
           "median_ms": float(np.median(latencies)) * 1e3, "rss_before_mb": peaks[-1][0] / 2**20,
           "peak_rss_mb": max(p for _, p in peaks) / 2**20,
           "peak_growth_mb": max(p - b for b, p in peaks) / 2**20,
           "over_limit": over_limit}
    log(f"  {rows:,} rows as Arrow ({out['body_mb']:.1f} MB): median {out['median_ms']:.0f} ms, server peak RSS "
        f"{out['peak_rss_mb']:.0f} MiB (+{out['peak_growth_mb']:.0f} MiB over idle)"
        + (f"; {over_limit['rows']:,} rows: {over_limit['status']}" if over_limit else ""))
    return out
