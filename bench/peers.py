"""Peer comparisons of issues 10, 11 and 21, all against the same exported `purchase_gbm`, each figure taken by the
bench's own client and by an external tool (bench/measure.py):

- `/predict` at concurrency 32: the service, MLServer (V2, one row), the FastAPI reference app, and the framework's
  ceiling (bench/ceiling_service.py); the bench's load process and `hey`;
- 10,000 rows in one request: our V2 endpoint with MLServer's very body (log on and PREDICTION_LOG=0), records
  JSON, Arrow, MLServer, the reference app (the bench's httpx client and `curl`), and the raw in-process pipeline.

Every comparison alternates its variants round by round; each answer is checked once against the model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd

from bench.doors import ARROW, V2_PATH, arrow_bytes, arrow_proba, probe_doors, v2_positive
from bench.measure import IDENTITY, JSON, Call, Loads, medians_ms, time_calls


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

PREDICT_PEERS = ("service", "mlserver", "ceiling", "reference")


def scenario_predict(cfg, servers, loads: Loads, frame: pd.DataFrame, log: Callable) -> dict:
    from bench.mlserver_peer import v2_request

    records = frame.iloc[:512].to_dict("records")
    bodies = {
        "service": [orjson.dumps(r) for r in records],
        "reference": [orjson.dumps(r) for r in records],
        "ceiling": [orjson.dumps({"records": [r]}) for r in records],
        "mlserver": [orjson.dumps(v2_request(frame.iloc[i:i + 1])) for i in range(len(records))],
    }
    paths = {"service": "/predict", "reference": "/predict", "ceiling": "/predict", "mlserver": V2_PATH}
    names = [n for n in PREDICT_PEERS if n in servers]
    # correctness once: the same record gets the same probability from the service and MLServer
    one = httpx.post(servers["service"].url + "/predict", content=bodies["service"][0], headers=JSON, timeout=60).json()
    if "mlserver" in servers:
        theirs = v2_positive(httpx.post(servers["mlserver"].url + V2_PATH, content=bodies["mlserver"][0],
                                        headers=IDENTITY, timeout=60).json())
        if abs(theirs[0] - one["predicted_purchase_probability"]) > 1e-12:
            raise RuntimeError(f"/predict and MLServer disagree: {one} vs {theirs}")
    c = cfg.focus_concurrency
    targets = [loads.target(f"predict_{n}", servers[n].url + paths[n], bodies[n]) for n in names]
    loads.warm(targets, c, cfg.warm_seconds)  # connections, the batchers, caches
    before = batch_stats(servers["service"].url)
    loads.alternate(targets, c, cfg.load_rounds, cfg.load_seconds, cfg.load_requests)
    batch = mean_batch(before, batch_stats(servers["service"].url))
    rows = [{**row, "server": row["server"].removeprefix("predict_")}
            for row in loads.rows([t.name for t in targets], predict_service={"mean_batch": batch})]
    for row in rows:
        log(f"  c={c:<3} {row['server']:10} {row['tool']:8} {row['throughput']:7.0f} req/s  p50 {row['p50_ms']:7.1f} ms  "
            f"p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}")
    return {"concurrency": c, "rows": rows}


# --- 10,000 rows in one request ---------------------------------------------------------------------------------------

def scenario_batch(cfg, servers, frame: pd.DataFrame, model, validator, workdir: Path, log: Callable) -> dict:
    """All the ways of sending `cfg.focus_size` rows, alternating; medians of sequential requests by the bench's
    httpx client (keep-alive) and by curl (bench/measure.py)."""
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

    def agrees(name: str, proba: Callable[[httpx.Response], np.ndarray]) -> Callable[[httpx.Response], None]:
        def check(response: httpx.Response) -> None:
            got = proba(response)
            if len(got) != len(subset) or not np.allclose(got, expected, rtol=0, atol=1e-9):
                raise RuntimeError(f"{name} disagrees with the model on {len(subset)} rows")
        return check

    def records_proba(r: httpx.Response) -> np.ndarray:
        return np.array([p["predicted_purchase_probability"] for p in orjson.loads(r.content)["predictions"]])

    def v2_proba(r: httpx.Response) -> np.ndarray:
        return v2_positive(orjson.loads(r.content))

    calls = []
    if "v2" not in skipped:
        calls.append(Call("service_v2", door_url + V2_PATH, v2_body, check=agrees("service_v2", v2_proba)))
        if "nolog" in servers:
            calls.append(Call("service_v2_nolog", servers["nolog"].url + V2_PATH, v2_body,
                              check=agrees("service_v2_nolog", v2_proba)))
    calls.append(Call("service", service + "/batch_predict", records_body, check=agrees("service", records_proba)))
    if "arrow" not in skipped:
        calls.append(Call("service_arrow", door_url + "/batch_predict", arrow_body,
                          {"Content-Type": ARROW, "Accept": ARROW, "Accept-Encoding": "identity"},
                          check=agrees("service_arrow", lambda r: arrow_proba(r.content))))
    if "mlserver" in servers:
        from bench.mlserver_peer import UNBATCHED

        url = servers["mlserver"].url + V2_PATH
        calls.append(Call("mlserver_v2", url, v2_body, check=agrees("mlserver_v2", v2_proba)))
        calls.append(Call("mlserver_v2_unbatched", servers["mlserver"].url + f"/v2/models/{UNBATCHED}/infer", v2_body,
                          check=agrees("mlserver_v2_unbatched", v2_proba)))
        # what a client that asks for gzip (httpx's and requests' default) gets: MLServer compresses at level 9
        calls.append(Call("mlserver_v2_gzip", url, v2_body, {**JSON, "Accept-Encoding": "gzip, deflate"},
                          check=agrees("mlserver_v2_gzip", v2_proba)))
    if "reference" in servers:
        calls.append(Call("reference", servers["reference"].url + "/batch_predict", records_body,
                          check=agrees("reference", records_proba)))
    calls.append(Call("raw", run=lambda: inprocess.raw_pipeline(model, validator, records_body)["total"]))
    calls.append(Call("raw_dataframe", run=lambda: inprocess.dataframe_pipeline(model, subset)["total"]))
    if "arrow" not in skipped:  # the project's own client helper, end to end, once
        from serving.client import predict_arrow

        with httpx.Client(timeout=600) as client:
            answer = predict_arrow(door_url, subset, client=client)
        if not np.allclose(answer["predicted_purchase_probability"].to_numpy(), expected, rtol=0, atol=1e-9):
            raise RuntimeError("serving.client.predict_arrow disagrees with the model")
    times = time_calls(calls, cfg.size_reps[cfg.focus_size], workdir)
    medians = medians_ms(times)
    for name, by_tool in medians.items():
        log(f"  {name:18} " + "  ".join(f"{tool} {v:7.1f} ms" for tool, v in by_tool.items()))
    return {"records": len(subset), "median_ms": medians, "reps": cfg.size_reps[cfg.focus_size], "skipped": skipped,
            "body_mb": {"records_json": len(records_body) / 2**20, "v2_json": len(v2_body) / 2**20,
                        "arrow": len(arrow_body) / 2**20}}
