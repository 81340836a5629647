"""bench/results/: results.md (a table per scenario, the ratios and whether each target holds), results.json and
the plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


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


def targets(results: dict, cfg) -> list[dict[str, Any]]:
    rows = {(r["server"], r["concurrency"]): r for r in results["batching"]["rows"]}
    c = cfg.focus_concurrency
    on, off, nolog = rows.get(("on", c)), rows.get(("off", c)), rows.get(("nolog", c))
    batch = {r["records"]: r for r in results["batch"]["rows"]}[cfg.focus_size]
    out = []
    ratio = on["throughput"] / off["throughput"] if off["throughput"] else float("inf")
    out.append({"target": f"batching on >= 3x throughput of off at concurrency {c}", "measured": f"{ratio:.2f}x",
                "ok": ratio >= 3})
    out.append({"target": f"batching on p99 no worse than off at concurrency {c}",
                "measured": f"{on['p99_ms'] / off['p99_ms']:.2f}x of off's p99", "ok": on["p99_ms"] <= off["p99_ms"]})
    ratio = batch["service_ms"] / batch["raw_ms"]
    out.append({"target": f"/batch_predict of {cfg.focus_size:,} records <= 1.5x the raw in-process pipeline",
                "measured": f"{ratio:.2f}x", "ok": ratio <= 1.5})
    ratio = batch["reference_ms"] / batch["service_ms"]
    out.append({"target": f"/batch_predict of {cfg.focus_size:,} records >= 2x faster than the reference app",
                "measured": f"{ratio:.2f}x faster", "ok": ratio >= 2})
    cost = batch["service_ms"] / batch["service_nolog_ms"] - 1
    out.append({"target": f"prediction log costs <= 10% (/batch_predict, {cfg.focus_size:,} records, latency)",
                "measured": f"{cost * 100:+.1f}%", "ok": cost <= 0.10})
    cost = nolog["throughput"] / on["throughput"] - 1
    out.append({"target": f"prediction log costs <= 10% (/predict throughput, concurrency {c})",
                "measured": f"{cost * 100:+.1f}%", "ok": cost <= 0.10})
    size = str(max(int(s) for s in results["breakdown"]))
    stages = results["breakdown"][size]
    by_size = {r["records"]: r for r in results["batch"]["rows"]}
    if int(size) in by_size:
        share = (stages["metrics"] + stages["signals"]) / by_size[int(size)]["service_ms"]
        out.append({"target": f"metrics cost <= 10% (in-process metrics + feature signals of a {int(size):,}-row batch, "
                              "share of the /batch_predict latency)", "measured": f"{share * 100:.1f}%", "ok": share <= 0.10})
    for row in results["multimodel"]["rows"]:
        if row["models"] > 1:
            ratio = row["extra_over_raw"]
            out.append({"target": f"/v1/predict: {row['models'] - 1} extra model(s) cost <= 1.3x their raw predict time",
                        "measured": f"{ratio:.2f}x", "ok": ratio <= 1.3})
    return out


def plots(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = results["batching"]["rows"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label in (("on", "batching on"), ("off", "batching off")):
        mine = sorted((r for r in rows if r["server"] == name), key=lambda r: r["concurrency"])
        xs = [r["concurrency"] for r in mine]
        left.plot(xs, [r["throughput"] for r in mine], marker="o", label=label)
        right.plot(xs, [r["p50_ms"] for r in mine], marker="o", label=f"{label} p50")
        right.plot(xs, [r["p99_ms"] for r in mine], marker="^", linestyle="--", label=f"{label} p99")
    left.set(title="/predict throughput", xlabel="concurrency", ylabel="requests / s")
    right.set(title="/predict latency", xlabel="concurrency", ylabel="ms", yscale="log")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        if len({r["concurrency"] for r in rows}) > 1:
            axis.set_xscale("log", base=2)
    fig.tight_layout()
    fig.savefig(out / "batching.png", dpi=110)
    plt.close(fig)
    written.append("batching.png")

    batch = results["batch"]["rows"]
    fig, axis = plt.subplots(figsize=(6.5, 4.2))
    xs = [r["records"] for r in batch]
    for key, label in (("service_ms", "service /batch_predict"), ("raw_ms", "raw in-process pipeline"),
                       ("reference_ms", "reference app (FastAPI)"), ("raw_columnar_ms", "raw, columnar JSON (prototype)")):
        axis.plot(xs, [r[key] for r in batch], marker="o", label=label)
    axis.set(title="batch latency against records (median)", xlabel="records", ylabel="ms", xscale="log", yscale="log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "batch_latency.png", dpi=110)
    plt.close(fig)
    written.append("batch_latency.png")
    return written


def write_report(results: dict, cfg, out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checks = targets(results, cfg)
    results["targets"] = checks
    images = plots(results, out)
    meta = results["meta"]
    lines = [
        "# Serving benchmarks",
        "",
        f"`{meta['command']}` ({meta['mode']} mode), {meta['date']}, {meta['seconds']} s, {meta['cpus']} CPUs, "
        f"Python {meta['python']}; load average at start/end: "
        + " / ".join(", ".join(f"{x:.1f}" for x in la) for la in meta["load_average_start_end"]) + ".",
        "Every comparison below was measured in this run, alternating its variants round by round; the machine is "
        "shared, so read the ratios, not the absolute numbers. Servers: `bentoml serve` with 1 worker, "
        "6 models loaded (the 4 defaults + a second version of each purchase model), MAX_RECORDS=50000, loopback only.",
        "",
        "## Targets",
        "",
    ]
    if meta["mode"] == "quick":
        lines += ["**Quick mode**: a seconds-long smoke of the suite (tiny samples, one concurrency, smaller sizes); "
                  "its verdicts are not measurements. Run `python -m bench.run` for the real table.", ""]
    lines += _table(["target", "measured (same run)", "verdict"], [[c["target"], c["measured"], _verdict(c["ok"])] for c in checks])

    lines += ["## 1. Adaptive batching on/off: single-record /predict", "",
              f"Closed loop, {cfg.load_rounds} round(s) of at most {cfg.load_seconds:g} s or {cfg.load_requests:,} requests "
              "per variant and concurrency; p50/p99 pooled over rounds; errors are non-200 answers (503 = batcher "
              "overloaded). `mean batch` is read from `bentoml_service_adaptive_batch_size` on /metrics.", ""]
    by = {(r["server"], r["concurrency"]): r for r in results["batching"]["rows"]}
    table = []
    for c in cfg.concurrencies:
        on, off = by[("on", c)], by[("off", c)]
        table.append([c, on["throughput"], off["throughput"], f"{on['throughput'] / off['throughput']:.2f}x",
                      on["p50_ms"], off["p50_ms"], on["p99_ms"], off["p99_ms"], f"{on['p99_ms'] / off['p99_ms']:.2f}x",
                      f"{on['errors']} / {off['errors']}", on["mean_batch"]])
    lines += _table(["concurrency", "on req/s", "off req/s", "on/off", "on p50 ms", "off p50 ms", "on p99 ms",
                     "off p99 ms", "p99 on/off", "errors on / off", "mean batch"], table)
    lines += [f"![batching](batching.png)", ""]

    lines += ["## 2 and 5. /batch_predict against the raw in-process pipeline and the reference app", "",
              "Median latency of sequential requests (one client, keep-alive). `raw` = the service's own steps in "
              "process: one pydantic-core pass over the JSON bytes, frame + rules, features + predict, orjson "
              "response (no HTTP, metrics or log). `reference` = bench/reference_app.py (FastAPI, a pydantic "
              "object per record, a DataFrame, predict_proba) under uvicorn, with the same one-thread model calls. "
              "`raw columnar` = prototype of a columnar JSON input path (bench/inprocess.py), not served.", ""]
    table = []
    for r in results["batch"]["rows"]:
        table.append([f"{r['records']:,}", r["body_mb"], r["service_ms"], r["raw_ms"], f"{r['service_ms'] / r['raw_ms']:.2f}x",
                      r["reference_ms"], f"{r['reference_ms'] / r['service_ms']:.2f}x", r["raw_columnar_ms"],
                      f"{r['raw_ms'] / r['raw_columnar_ms']:.2f}x"])
    lines += _table(["records", "body MB", "service ms", "raw ms", "service/raw", "reference ms",
                     "reference/service", "raw columnar ms", "raw records/columnar"], table)
    lines += ["Where the raw pipeline's time goes (median ms):", ""]
    stages = results["batch"]["raw_stages_ms"]
    lines += _table(["records", "parse+validate+frame", "features+predict", "serialize", "total"],
                    [[f"{int(k):,}", v["parse_validate"], v["predict"], v["serialize"], v["total"]] for k, v in stages.items()])
    lines += ["![batch latency](batch_latency.png)", ""]

    mm = results["multimodel"]
    lines += ["## 3. /v1/predict: 1, 2 and 4 models on shared inputs", "",
              f"{mm['records']:,} shared input records; models: purchase_gbm, + purchase_lr, + a second version of each. "
              f"Raw predict (in process, same frame): purchase_gbm {mm['raw_predict_ms']['purchase_gbm']:.1f} ms, "
              f"purchase_lr {mm['raw_predict_ms']['purchase_lr']:.1f} ms. Extra cost = latency(k) - latency(1).", ""]
    lines += _table(["models", "latency ms", "extra ms", "raw predict of the extra models ms", "extra / raw"],
                    [[r["models"], r["latency_ms"], r["extra_ms"], r["raw_extra_predict_ms"],
                      "-" if r["extra_over_raw"] is None else f"{r['extra_over_raw']:.2f}x"] for r in mm["rows"]])

    lines += ["## 4. Prediction log and metrics", "",
              "Log on/off: two servers, PREDICTION_LOG=1 vs 0, measured alternately with the scenarios above. "
              "There is no switch for our metrics, so their cost is measured in process, per scored batch, with "
              "prometheus_client in multiprocess mode as in the server.", ""]
    c = cfg.focus_concurrency
    on, nolog = by[("on", c)], by[("nolog", c)]
    batch = {r["records"]: r for r in results["batch"]["rows"]}[cfg.focus_size]
    lines += _table(["measure", "log on", "log off", "on/off"], [
        [f"/predict req/s, concurrency {c}", on["throughput"], nolog["throughput"], f"{on['throughput'] / nolog['throughput']:.2f}x"],
        [f"/predict p99 ms, concurrency {c}", on["p99_ms"], nolog["p99_ms"], f"{on['p99_ms'] / nolog['p99_ms']:.2f}x"],
        [f"/batch_predict ms, {cfg.focus_size:,} records", batch["service_ms"], batch["service_nolog_ms"],
         f"{batch['service_ms'] / batch['service_nolog_ms']:.2f}x"],
    ])
    lines += ["Predictor.score per batch, in process (median ms):", ""]
    lines += _table(["rows", "predict", "metrics", "feature signals", "log encode", "log write"],
                    [[f"{int(k):,}", v["predict"], v["metrics"], v["signals"], v["log_encode"], v["log_write"]]
                     for k, v in results["breakdown"].items()])

    if "threads_default" in {r["server"] for r in results["batching"]["rows"]}:
        td = by[("threads_default", c)]
        lines += ["## Fix: OpenMP threads per model call (before/after, same run)", "",
                  "Before: libgomp's default, one OpenMP thread per core (`OMP_NUM_THREADS=<cpus>` on a server). After: "
                  "serving/predictor.py bounds each model call to one OpenMP thread (threadpoolctl).", ""]
        lines += _table(["measure", "before", "after", "after vs before"], [
            [f"/predict req/s, concurrency {c}", td["throughput"], on["throughput"], f"{on['throughput'] / td['throughput']:.2f}x"],
            [f"/predict p99 ms, concurrency {c}", td["p99_ms"], on["p99_ms"], f"{on['p99_ms'] / td['p99_ms']:.2f}x"],
            [f"/predict errors, concurrency {c}", td["errors"], on["errors"], "-"],
            [f"/batch_predict ms, {cfg.focus_size:,} records", batch["service_threads_default_ms"], batch["service_ms"],
             f"{batch['service_ms'] / batch['service_threads_default_ms']:.2f}x"],
            [f"predict_proba ms in process, {cfg.focus_size:,} rows", results["threads"]["default"],
             results["threads"]["bounded"], f"{results['threads']['bounded'] / results['threads']['default']:.2f}x"],
        ])

    lines += ["## 6. Start-up and memory", "",
              "Ready = from process start to /readyz 200 (all models loaded). RSS = sum over the process tree "
              "(BentoML's supervisor and worker), right after ready and after the whole run."
              + (" Servers were started one after another." if cfg.sequential_start else
                 " Servers were started concurrently (quick mode), so start-up times are inflated."), ""]
    lines += _table(["server", "ready s", "RSS at ready MiB", "RSS after run MiB"],
                    [[s["name"], s["ready_s"], s["rss_ready_mb"], s["rss_after_mb"]] for s in results["servers"]])
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    results["images"] = images
