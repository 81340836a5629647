"""bench/results/: results.json (written first), results.md (a table per scenario, the ratios and whether each
target holds) and the plots (bench/plots.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

LABELS = {
    "service": "this service", "mlserver": "MLServer 1.7.1", "ceiling": "BentoML ceiling (constant answer)",
    "reference": "FastAPI reference app", "raw": "raw in-process pipeline (records JSON)",
    "mlserver_v2": "MLServer, columnar V2 JSON", "service_nolog": "this service, PREDICTION_LOG=0",
    "service_v2": "this service, /v2 infer (MLServer's body)", "service_arrow": "this service, Arrow /batch_predict",
    "raw_dataframe": "raw pipeline on a DataFrame",
}


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines + [""]


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("**holds**" if ok else "**missed**")


def _rows(scenario: dict | None) -> dict[str, dict]:
    return {r["server"]: r for r in (scenario or {}).get("rows", [])}


def targets(results: dict, cfg) -> list[dict[str, Any]]:
    """Issue 10's and 11's targets, each from figures of this run; a target whose figures are missing is listed as
    not measured, with the reason."""
    out: list[dict[str, Any]] = []

    def add(target: str, value: float | None, ok, fmt: str = "{:.2f}x", missing: str = "not measured") -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.append({"target": target, "measured": missing, "ok": None})
        else:
            out.append({"target": target, "measured": fmt.format(value), "ok": bool(ok(value))})

    peers = _rows(results.get("predict"))
    c = cfg.focus_concurrency
    svc = peers.get("service")

    def ratio(a: dict | None, b: dict | None, key: str) -> float | None:
        return a[key] / b[key] if a and b and b[key] else None

    add(f"/predict c={c}: >= 1.1x MLServer's throughput", ratio(svc, peers.get("mlserver"), "throughput"), lambda v: v >= 1.1)
    add(f"/predict c={c}: p99 no worse than MLServer's", ratio(svc, peers.get("mlserver"), "p99_ms"), lambda v: v <= 1.0,
        "{:.2f}x MLServer's p99")
    add(f"/predict c={c}: >= 6x the FastAPI app's throughput", ratio(svc, peers.get("reference"), "throughput"),
        lambda v: v >= 6)
    add(f"/predict c={c}: >= 85% of the BentoML ceiling's throughput", ratio(svc, peers.get("ceiling"), "throughput"),
        lambda v: v >= 0.85, "{:.0%}")
    batch = (results.get("batch") or {}).get("median_ms", {})
    skipped = (results.get("batch") or {}).get("skipped", {})
    n = f"{cfg.focus_size:,}"

    def over(a: str, b: str) -> float | None:
        return batch[a] / batch[b] if a in batch and b in batch else None

    add(f"/batch_predict {n} records: >= 2.5x faster than the FastAPI app", over("reference", "service"), lambda v: v >= 2.5,
        "{:.2f}x faster")
    add(f"/batch_predict {n} records: <= 1.3x the raw in-process pipeline", over("service", "raw"), lambda v: v <= 1.3)
    mixed = _rows(results.get("mixed"))
    alone, beside = mixed.get("alone"), mixed.get("with_batches")
    add("mixed load: /predict keeps >= 50% of its throughput beside big batches", ratio(beside, alone, "throughput"),
        lambda v: v >= 0.5, "{:.0%}")
    add("mixed load: /predict p99 <= 3x its p99 alone", ratio(beside, alone, "p99_ms"), lambda v: v <= 3)
    workers = _rows(results.get("workers"))
    add("WORKERS=2: >= 1.5x the /predict throughput of WORKERS=1",
        ratio(workers.get("workers2"), workers.get("workers1"), "throughput"), lambda v: v >= 1.5)
    cost = log_and_metrics_cost(results, cfg)
    add(f"log + metrics cost <= 5% of a {n}-record /batch_predict (sync log)", cost, lambda v: v <= 0.05, "{:+.1%}")
    for row in (results.get("multimodel") or {}).get("rows", []):
        if row["models"] > 1:
            add(f"/v1/predict: {row['models'] - 1} extra model(s) cost <= 1.3x their raw predict time",
                row["extra_over_raw"], lambda v: v <= 1.3)
    add(f"V2 infer {n} rows (MLServer's body): no slower than MLServer", over("service_v2", "mlserver_v2"),
        lambda v: v <= 1.0, missing=skipped.get("v2", "not measured"))
    add(f"Arrow /batch_predict {n} rows: <= 0.6x MLServer's V2 JSON time", over("service_arrow", "mlserver_v2"),
        lambda v: v <= 0.6, missing=skipped.get("arrow", "not measured"))
    add(f"Arrow /batch_predict {n} rows: <= 1.2x the raw pipeline on a DataFrame", over("service_arrow", "raw_dataframe"),
        lambda v: v <= 1.2, missing=skipped.get("arrow", "not measured"))
    return out


def log_and_metrics_cost(results: dict, cfg) -> float | None:
    """Share of a focus-size /batch_predict spent on the log (service vs PREDICTION_LOG=0, same run) plus our
    metrics and feature signals (in process, per scored batch: there is no switch for metrics)."""
    batch = (results.get("batch") or {}).get("median_ms", {})
    stages = (results.get("breakdown") or {}).get(str(cfg.focus_size))
    if "service" not in batch or "service_nolog" not in batch or not stages:
        return None
    log = batch["service"] - batch["service_nolog"]
    return (log + stages["metrics"] + stages["signals"]) / batch["service"]


def write_report(results: dict, cfg, out: Path) -> None:
    from bench.plots import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results["targets"] = targets(results, cfg)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    results["images"] = plots(results, out, LABELS)
    (out / "results.md").write_text("\n".join(markdown(results, cfg)))


def markdown(results: dict, cfg) -> list[str]:
    meta = results["meta"]
    c = cfg.focus_concurrency
    lines = [
        "# Serving benchmarks", "",
        f"`{meta['command']}` ({meta['mode']} mode, scenarios {', '.join(meta['scenarios'])}), {meta['date']}, "
        f"{meta['seconds']} s, {meta['cpus']} CPUs, Python {meta['python']}, code at `{meta['commit']}`; load average "
        "at start/end: " + " / ".join(", ".join(f"{x:.1f}" for x in la) for la in meta["load_average_start_end"]) + ".",
        "Every comparison below was measured in this run, alternating its variants round by round; the machine is "
        "shared, so read the ratios, not the absolute numbers. All peers serve the same `purchase_gbm` (HistGradient"
        "Boosting + its feature step) with one OpenMP thread per model call, one process each, on loopback."
        + (f" Served checkout: `{meta['root']}`; issue 11's V2 and Arrow variants from a second server of "
           f"`{meta['doors_root']}` (`{meta['doors_commit']}`)." if meta.get("doors_root") else ""), "",
        "## Targets", "",
    ]
    if meta["mode"] == "quick":
        lines += ["**Quick mode**: a seconds-long smoke of the suite (tiny samples, small sizes); its verdicts are not "
                  "measurements. Run `make bench` for the real table.", ""]
    lines += _table(["target", "measured (same run)", "verdict"],
                    [[t["target"], t["measured"], _verdict(t["ok"])] for t in results["targets"]])

    if "predict" in results:
        p = results["predict"]
        lines += [f"## /predict at concurrency {c}: the service against its peers", "",
                  f"Closed loop (aiohttp, its own process), {cfg.load_rounds} round(s) of at most {cfg.load_seconds:g} s "
                  f"or {cfg.load_requests:,} requests per server, alternating; p50/p99 pooled over rounds. Bodies: one "
                  "record JSON (service, reference app), `{\"records\": [record]}` (ceiling: BentoML's own parsing of a "
                  "list of the record schema), one-row columnar V2 JSON asking for `predict_proba` (MLServer). MLServer: "
                  "adaptive batching 256 / 5 ms, `parallel_workers: 0`. `mean batch` from "
                  "`bentoml_service_adaptive_batch_size` on the service's /metrics.", ""]
        base = _rows(p).get("service")
        lines += _table(["server", "req/s", "vs service", "p50 ms", "p99 ms", "errors", "mean batch"],
                        [[LABELS.get(r["server"], r["server"]), r["throughput"],
                          f"{r['throughput'] / base['throughput']:.2f}x" if base else "-", r["p50_ms"], r["p99_ms"],
                          f"{r['errors']} {r['statuses']}" if r["errors"] else "0", r.get("mean_batch")]
                         for r in p["rows"]])
        lines += ["![/predict against its peers](predict.png)", ""]

    if "batch" in results:
        b = results["batch"]
        med = b["median_ms"]
        lines += [f"## {b['records']:,} rows in one request", "",
                  "Median of sequential requests (one client, keep-alive), alternating; every answer was checked once "
                  "against the model's own probabilities. `raw` = the service's steps in process over the records JSON "
                  "(parse + validate + frame, features + predict, orjson answer; no HTTP, metrics or log). `raw "
                  "pipeline on a DataFrame` = features + predict_proba + classes on rows already in a DataFrame. Body "
                  "sizes: " + ", ".join(f"{k} {v:.2f} MB" for k, v in b["body_mb"].items()) + ".", ""]
        for door, reason in b["skipped"].items():
            lines += [f"- **skipped {door}**: {reason}"]
        lines += [""] if b["skipped"] else []
        lines += _table(["variant", "median ms", "vs service (records JSON)", "vs MLServer V2 JSON"],
                        [[LABELS.get(k, k), v, f"{v / med['service']:.2f}x",
                          f"{v / med['mlserver_v2']:.2f}x" if "mlserver_v2" in med else "-"] for k, v in med.items()])
        lines += ["![batch latency](batch.png)", ""]

    if "arrow_big" in results:
        a = results["arrow_big"]
        lines += [f"## {a['rows']:,} rows as Arrow in one request", ""]
        if "skipped" in a:
            lines += [f"**Skipped**: {a['skipped']}", ""]
        else:
            lines += [f"Body {a['body_mb']:.1f} MB; {len(a['latency_ms'])} requests, latency "
                      + ", ".join(f"{t:.0f}" for t in a["latency_ms"]) + f" ms (median {a['median_ms']:.0f} ms). The "
                      f"server's process tree: {a['rss_before_mb']:.0f} MiB idle, peak {a['peak_rss_mb']:.0f} MiB "
                      f"(+{a['peak_growth_mb']:.0f} MiB), sampled every 20 ms. Limits: MAX_RECORDS and MAX_BODY_BYTES "
                      "(the bench sets them to 100,000 and 256 MiB)" + (
                          f"; {a['over_limit']['rows']:,} rows were answered {a['over_limit']['status']}: "
                          f"`{a['over_limit']['answer'][:120]}`" if a.get("over_limit") else "") + ".", ""]

    for key, title, labels in (("mixed", "Mixed load", {"alone": "/predict alone", "with_batches": "/predict beside batches"}),
                               ("workers", "WORKERS=2 against WORKERS=1", {"workers1": "WORKERS=1", "workers2": "WORKERS=2"})):
        if key in results and "rows" in results[key]:
            m = results[key]
            lines += [f"## {title} (/predict, concurrency {m['concurrency']})", ""]
            if key == "mixed":
                lines += [f"Beside: one client posting {m['batch_records']:,}-record /batch_predict calls back to back "
                          f"({m['batches']} answered" + (f", non-200 {m['batch_statuses']}" if m["batch_statuses"] else "")
                          + "). Alternating rounds.", ""]
            first = m["rows"][0]
            lines += _table(["variant", "req/s", "vs first", "p50 ms", "p99 ms", "p99 vs first", "errors"],
                            [[labels[r["server"]], r["throughput"], f"{r['throughput'] / first['throughput']:.2f}x",
                              r["p50_ms"], r["p99_ms"], f"{r['p99_ms'] / first['p99_ms']:.2f}x", r["errors"]]
                             for r in m["rows"]])
    if any(k in results for k in ("mixed", "workers")):
        lines += ["![contention](contention.png)", ""]

    if "multimodel" in results:
        mm = results["multimodel"]
        lines += ["## /v1/predict: 1, 2 and 4 models on shared inputs", "",
                  f"{mm['records']:,} shared input records; models: purchase_gbm, + purchase_lr, + a second version of "
                  f"each. Raw predict (in process, same frame): purchase_gbm {mm['raw_predict_ms']['purchase_gbm']:.1f} "
                  f"ms, purchase_lr {mm['raw_predict_ms']['purchase_lr']:.1f} ms. Extra = latency(k) - latency(1).", ""]
        lines += _table(["models", "latency ms", "extra ms", "raw predict of the extra models ms", "extra / raw"],
                        [[r["models"], r["latency_ms"], r["extra_ms"], r["raw_extra_predict_ms"],
                          "-" if r["extra_over_raw"] is None else f"{r['extra_over_raw']:.2f}x"] for r in mm["rows"]])

    if "breakdown" in results:
        lines += ["## Prediction log and metrics", "",
                  "Log: the service against a second one with PREDICTION_LOG=0 (the 10,000-row table above). Metrics "
                  "have no switch, so their cost is measured in process per scored batch, with prometheus_client in "
                  "multiprocess mode as in the server (median ms):", ""]
        lines += _table(["rows", "predict", "metrics", "feature signals", "log encode", "log write"],
                        [[f"{int(k):,}", v["predict"], v["metrics"], v["signals"], v["log_encode"], v["log_write"]]
                         for k, v in results["breakdown"].items()])
    if "threads" in results:
        t = results["threads"]
        lines += [f"OpenMP threads per model call, in process ({cfg.focus_size:,} rows): libgomp's default "
                  f"{t['default']:.1f} ms, the service's bound of one thread {t['bounded']:.1f} ms.", ""]

    lines += ["## Start-up and memory", "",
              "Ready = from process start to ready (all models loaded). RSS = sum over the process tree, right after "
              "ready and after the whole run."
              + (" Servers were started one after another." if cfg.sequential_start else
                 " Servers were started concurrently, so start-up times are inflated."), ""]
    lines += _table(["server", "ready s", "RSS at ready MiB", "RSS after run MiB"],
                    [[s["name"], s["ready_s"], s["rss_ready_mb"], s["rss_after_mb"]] for s in results["servers"]])
    return lines
