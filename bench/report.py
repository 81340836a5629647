"""bench/results/: results.json (written first), results.md (the targets judged by both tools, then a table per
scenario with both tools' figures) and the plots (bench/plots.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.targets import LABELS, TOLERANCE, TOOL_NAMES, Judged, agree, busy_machine, mlserver_best, targets


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


def _verdict(t: Judged) -> str:
    return f"**{t.verdict}**" if t.ok is not None or t.verdict == "TOOLS DISAGREE" else t.verdict


def _value(t: Judged, tool: str) -> str:
    value = t.values.get(tool)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return t.fmt.format(value) + (f" ({t.details[tool]})" if tool in t.details else "")


def write_report(results: dict, cfg, out: Path) -> list[Judged]:
    """results.json, the plots and results.md; returns the judged targets."""
    from bench.plots import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    judged = targets(results, cfg)
    results["targets"] = [t.as_dict() for t in judged]
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    results["images"] = plots(results, out)
    (out / "results.md").write_text("\n".join(markdown(results, judged, cfg)))
    return judged


def _workers(meta: dict) -> str:
    workers = meta.get("mlserver_parallel_workers", 0)
    return "its default (1)" if workers is None else str(workers)


def header(meta: dict) -> list[str]:
    (start, end) = meta["load_average_start_end"]
    return [
        "# Serving benchmarks", "",
        f"Command: `{meta['command']}` ({meta['mode']} mode; scenarios {', '.join(meta['scenarios'])}), "
        f"finished {meta['date']} after {meta['seconds']} s, {meta['cpus']} CPUs, Python {meta['python']}, code at "
        f"`{meta['commit']}`.", "",
        f"**Load average** (1, 5, 15 min) at the start: {', '.join(f'{x:.2f}' for x in start)}; at the end: "
        f"{', '.join(f'{x:.2f}' for x in end)}. The machine may be shared: read the ratios, measured side by side "
        "in this run, not the absolute numbers.", "",
        "Peers at their defaults, in the same environment: the service (`bentoml serve`, one worker; a model call takes "
        "the OpenMP threads free on its cores, and waiting threads sleep) and MLServer 1.7.1 (libgomp's default threads, its GZip middleware on), "
        "serving the same exported `purchase_gbm` pipeline, answers checked equal; MLServer with the settings issue "
        "21 measured it with: adaptive batching 256 / 5 ms (and a second copy of the model without), "
        f"`parallel_workers: {_workers(meta)}`.",
        "",
        "Every figure is taken twice, by the bench's own client and by a tool not written here: `hey` for load "
        "(`/predict` rounds), `curl` for single big requests (`-w '%{time_total}'`, median of the rounds). Variants "
        "and tools alternate round by round. Neither asks for a compressed answer. A target's verdict is **holds** "
        "or **missed** only when both tools agree: their values within "
        f"{TOLERANCE['ratio']:.0%} of each other for ratios of medians and throughputs, {TOLERANCE['tail']:.0%} for "
        f"ratios of p99s, {TOLERANCE['share'] * 100:.0f} points for shares, and on the same side of the target.",
        "",
    ]


def target_lines(judged: list[Judged], quick: bool, busy: str | None = None) -> list[str]:
    lines = ["## Targets", ""]
    if busy:
        lines += [f"> **WARNING: the machine was busy**: {busy}. MLServer runs its model with libgomp's default "
                  "threads (one per core, its default), and an OpenMP barrier waits for every thread: with the cores "
                  "taken, its figures are not what it does on a quiet machine, and every comparison with it flatters "
                  "the service (whose waiting threads sleep). So do the in-process baselines, which run in the "
                  "bench's own process with libgomp's default policy. Those verdicts are marked not trusted; re-run "
                  "on a quiet machine.", ""]
    if quick:
        lines += ["**Quick mode**: a seconds-long smoke of the suite (tiny samples, small sizes); its verdicts are not "
                  "measurements. Run `make bench` for the real table.", ""]
    disagree = [t for t in judged if t.verdict == "TOOLS DISAGREE"]
    if disagree:
        lines += [f"> **WARNING: the bench's client and the external tool disagree on {len(disagree)} target(s)**; "
                  "neither figure is quoted as the measurement:", ">"]
        lines += [f"> - {t.target}: {TOOL_NAMES[t.tools]['bench']} {_value(t, 'bench')}, "
                  f"{TOOL_NAMES[t.tools]['external']} {_value(t, 'external')}" for t in disagree]
        lines += [""]
    for issue, title in (("21", "Issue 21"),
                         ("ceiling", "Issue 21's targets for BentoML's own path (the ceiling, measured the same way)"),
                         ("10", "Earlier targets (issues 10 and 11)")):
        rows = [t for t in judged if t.issue == issue or (issue == "10" and t.issue == "11")]
        if not rows:
            continue
        lines += [f"### {title}", ""]
        lines += _table(["target", "bench client", "external tool (hey / curl)", "verdict"],
                        [[t.target, _value(t, "bench"), _value(t, "external"), _verdict(t)] for t in rows])
    return lines


def predict_lines(results: dict, cfg) -> list[str]:
    p = results["predict"]
    lines = [f"## /predict at concurrency {p['concurrency']}: the service against its peers", "",
             f"{cfg.load_rounds} round(s) of {cfg.load_seconds:g} s per server and tool (the bench's client also stops "
             f"at {cfg.load_requests:,} requests), alternating. Throughput = answers / wall time over the rounds; p50 "
             "and p99 = the median of the rounds' own. The bench's client (aiohttp, its own process) cycles 512 "
             "records; hey sends the first of them. Bodies: one record JSON (service, reference app), "
             "`{\"records\": [record]}` (ceiling), one-row V2 JSON asking for `predict_proba` (MLServer). `mean "
             "batch` from `bentoml_service_adaptive_batch_size` on the service's /metrics, over both tools' rounds.",
             ""]
    base = {r["tool"]: r for r in p["rows"] if r["server"] == "service"}
    lines += _table(["server", "tool", "req/s", "vs service", "p50 ms", "p99 ms", "errors", "mean batch"],
                    [[LABELS.get(r["server"], r["server"]), TOOL_NAMES["load"][r["tool"]], r["throughput"],
                      f"{r['throughput'] / base[r['tool']]['throughput']:.2f}x" if r["tool"] in base else "-",
                      r["p50_ms"], r["p99_ms"], f"{r['errors']} {r['statuses']}" if r["errors"] else "0",
                      r.get("mean_batch")] for r in p["rows"]])
    return lines + ["![/predict against its peers](predict.png)", ""]


def batch_lines(results: dict) -> list[str]:
    b = results["batch"]
    med = b["median_ms"]
    lines = [f"## {b['records']:,} rows in one request", "",
             f"Median of {b['reps']} sequential requests per tool: the bench's httpx client (keep-alive) and `curl` "
             "(a new connection per call), alternating. Every answer was checked once against the model's own "
             "probabilities. MLServer serves the pipeline twice in one process: with adaptive batching 256 / 5 ms (a "
             "lone request waits the 5 ms for company) and without; `vs MLServer` and the targets use the faster of "
             "the two by each tool. `raw` = the service's steps in process over the records JSON (parse + validate + frame, "
             "features + predict, orjson answer; no HTTP, metrics or log); `raw pipeline on a DataFrame` = features + "
             "predict_proba + classes on rows already in a DataFrame (both in process: no curl). `client asks for "
             "gzip`: the same call with `Accept-Encoding: gzip, deflate`, what httpx and requests send unless told "
             "otherwise; MLServer then compresses its answer (its `gzip_enabled` default), which the service does "
             "not. Body sizes: " + ", ".join(f"{k} {v:.2f} MB" for k, v in b["body_mb"].items()) + ".", ""]
    for door, reason in b["skipped"].items():
        lines += [f"- **skipped {door}**: {reason}"]
    lines += [""] if b["skipped"] else []
    mls = mlserver_best(med)
    rows = []
    for name, by_tool in med.items():
        bench, curl = by_tool.get("bench"), by_tool.get("external")
        check = "-" if curl is None else (f"{curl / bench:.2f}" + ("" if agree(bench, curl, "ratio") else " **disagree**"))
        rows.append([LABELS.get(name, name), bench, curl, check,
                     " / ".join(f"{by_tool[t] / mls[t]:.2f}x" for t in ("bench", "external") if t in by_tool and t in mls)
                     or "-"])
    lines += _table(["variant", "bench client ms", "curl ms", "curl / bench", "vs MLServer's faster (bench / curl)"], rows)
    return lines + ["![batch latency](batch.png)", ""]


def arrow_big_lines(a: dict) -> list[str]:
    lines = [f"## {a['rows']:,} rows as Arrow in one request", ""]
    if "skipped" in a:
        return lines + [f"**Skipped**: {a['skipped']}", ""]
    return lines + [
        f"Body {a['body_mb']:.1f} MB; {len(a['latency_ms'])} requests (bench client only: a memory check), latency "
        + ", ".join(f"{t:.0f}" for t in a["latency_ms"]) + f" ms (median {a['median_ms']:.0f} ms). The server's process "
        f"tree: {a['rss_before_mb']:.0f} MiB idle, peak {a['peak_rss_mb']:.0f} MiB (+{a['peak_growth_mb']:.0f} MiB), "
        "sampled every 20 ms. Limits: MAX_RECORDS and MAX_BODY_BYTES (the bench sets them to 100,000 and 256 MiB)"
        + (f"; {a['over_limit']['rows']:,} rows were answered {a['over_limit']['status']}: "
           f"`{a['over_limit']['answer'][:120]}`" if a.get("over_limit") else "") + ".", ""]


def contention_lines(results: dict) -> list[str]:
    lines = []
    for key, title in (("mixed", "Mixed load"), ("workers", "WORKERS=2 against WORKERS=1")):
        if key not in results or "rows" not in results[key]:
            continue
        m = results[key]
        lines += [f"## {title} (/predict, concurrency {m['concurrency']})", ""]
        if key == "mixed":
            lines += [f"Beside: one client in the bench's process posting {m['batch_records']:,}-record /batch_predict "
                      f"calls back to back ({m['batches']} answered" +
                      (f", non-200 {m['batch_statuses']}" if m["batch_statuses"] else "") +
                      "), for the bench client's rounds and hey's alike. Alternating rounds.", ""]
        else:
            lines += ["The busiest worker's share of each round's records (read from BentoML's per-worker adaptive "
                      "batch sizes on /metrics) shows how the two workers shared the load tool's connections.", ""]
        first = {r["tool"]: r for r in m["rows"] if r["server"] == m["rows"][0]["server"]}
        split = key == "workers"
        lines += _table(["variant", "tool", "req/s", "vs first", "p50 ms", "p99 ms", "p99 vs first", "errors"]
                        + (["busiest worker, per round"] if split else []),
                        [[LABELS.get(r["server"], r["server"]), TOOL_NAMES["load"][r["tool"]], r["throughput"],
                          f"{r['throughput'] / first[r['tool']]['throughput']:.2f}x", r["p50_ms"], r["p99_ms"],
                          f"{r['p99_ms'] / first[r['tool']]['p99_ms']:.2f}x", r["errors"]]
                         + ([", ".join(f"{s:.0%}" for s in r.get("busiest_worker_share", []))] if split else [])
                         for r in m["rows"]])
    return lines + (["![contention](contention.png)", ""] if lines else [])


def multimodel_lines(mm: dict) -> list[str]:
    lines = ["## /v1/predict: 1, 2 and 4 models on shared inputs", "",
             f"{mm['records']:,} shared input records; models: purchase_gbm, + purchase_lr, + a second version of each "
             f"(bench client only). Raw predict (in process, same frame): purchase_gbm "
             f"{mm['raw_predict_ms']['purchase_gbm']:.1f} ms, purchase_lr {mm['raw_predict_ms']['purchase_lr']:.1f} ms. "
             "Extra = latency(k) - latency(1).", ""]
    return lines + _table(["models", "latency ms", "extra ms", "raw predict of the extra models ms", "extra / raw"],
                          [[r["models"], r["latency_ms"], r["extra_ms"], r["raw_extra_predict_ms"],
                            "-" if r["extra_over_raw"] is None else f"{r['extra_over_raw']:.2f}x"] for r in mm["rows"]])


def core_use_lines(core_use: dict[str, dict[str, float]], load: dict[str, float]) -> list[str]:
    if not core_use:
        return []
    names = sorted({n for use in core_use.values() for n in use}, key=lambda n: (n != "bench driver", n))
    lines = ["## Who used the cores", "",
             "CPU seconds per process tree during each scenario, as cores busy on average (2.00 = both cores of a "
             "2-core machine). `bench driver` = the bench's own process with the hey and curl runs it waited for; a "
             "server that is not under test yet uses CPU was competing with what was measured. `load` = the "
             "machine's 1-minute load average as the scenario began.", ""]
    return lines + _table(["scenario", "load", *names],
                          [[scenario, _f(load.get(scenario), 2), *[_f(use.get(n), 2) for n in names]]
                           for scenario, use in core_use.items()])


def markdown(results: dict, judged: list[Judged], cfg) -> list[str]:
    lines = header(results["meta"]) + target_lines(judged, results["meta"]["mode"] == "quick", busy_machine(results))
    if "predict" in results:
        lines += predict_lines(results, cfg)
    if "batch" in results:
        lines += batch_lines(results)
    if "arrow_big" in results:
        lines += arrow_big_lines(results["arrow_big"])
    lines += contention_lines(results)
    if "multimodel" in results:
        lines += multimodel_lines(results["multimodel"])
    if "breakdown" in results:
        lines += ["## Prediction log and metrics, in process", "",
                  "The log's end-to-end cost is the /v2 pair above (log on against PREDICTION_LOG=0). Here, per scored "
                  "batch in process, with prometheus_client in multiprocess mode as in the server (median ms, bench "
                  "only):", ""]
        lines += _table(["rows", "predict", "metrics", "feature signals", "log encode", "log write"],
                        [[f"{int(k):,}", v["predict"], v["metrics"], v["signals"], v["log_encode"], v["log_write"]]
                         for k, v in results["breakdown"].items()])
    if "threads" in results:
        t = results["threads"]
        lines += [f"OpenMP threads per model call, in process ({cfg.focus_size:,} rows): libgomp's default "
                  f"{t['default']:.1f} ms, one thread {t['bounded']:.1f} ms.", ""]
    lines += core_use_lines(results.get("core_use", {}), results.get("scenario_load", {}))
    lines += ["## Start-up and memory", "",
              "Ready = from process start to ready (all models loaded). RSS = sum over the process tree, right after "
              "ready and after the whole run." + (
                  " Servers were started one after another." if cfg.sequential_start
                  else " Servers were started concurrently, so start-up times are inflated."), ""]
    lines += _table(["server", "ready s", "RSS at ready MiB", "RSS after run MiB"],
                    [[s["name"], s["ready_s"], s["rss_ready_mb"], s["rss_after_mb"]] for s in results["servers"]])
    return lines
