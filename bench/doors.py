"""Issue 11's doors in the bench: V2 and Arrow bodies, whether a server has them (a door that is missing is skipped
with the printed reason, never faked), and the 100,000-row Arrow request (latency and the server's peak RSS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
import orjson
import pandas as pd

from bench.measure import JSON
from bench.servers import MAX_RECORDS, tree_rss

ARROW = "application/vnd.apache.arrow.stream"
V2_PATH = "/v2/models/purchase_gbm/infer"


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
    headers = {"Content-Type": ARROW, "Accept": ARROW, "Accept-Encoding": "identity"}  # as every bench client
    latencies, peaks = [], []
    with httpx.Client(timeout=600) as client:
        for rep in range(cfg.big_reps):
            before = tree_rss(server.pid)
            with PeakRSS(server.pid) as sampler:
                started = time.perf_counter()
                response = client.post(server.url + "/batch_predict", content=body, headers=headers)
                elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{rows} rows as Arrow answered {response.status_code}: {response.text[:300]}")
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
