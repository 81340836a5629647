"""The drift job: read the model and the window (monitoring/drift/inputs.py), run the report, write the
outputs (HTML, JSON summary, workspace snapshot, state file) and print the table."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from monitoring.drift.errors import DriftError
from monitoring.drift.html import save_html
from monitoring.drift.inputs import ReadRequest, read_inputs
from monitoring.drift.report import column_threshold, extract, run_report
from monitoring.drift.state import state_entry, update_state, write_json_atomic
from monitoring.drift.outputs import link_latest, run_files
from monitoring.drift.recent import combine, judge_recent, main_window
from monitoring.drift.verdict import exit_code, important_inputs, judge
from monitoring.drift.window import Engine, choose_window
from monitoring.drift.workspace import add_to_workspace


def format_table(summary: dict[str, Any]) -> str:
    rows = [
        (name, r["method"], "nan" if r["score"] is None else f"{r['score']:.4f}", f"{r['threshold']:g}",
         "DRIFTED" if r["drifted"] else "no")
        for name, r in summary["features"].items()
    ]
    header = ("feature", "method", "score", "threshold", "drifted")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [f"window: {summary['window']['description']}", "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    window = summary["window"]
    verdict = "DATASET DRIFT" if summary["dataset_drift"] else "no dataset drift"
    lines.append(
        f"{summary['model']}:{summary['model_version']}  rows {summary['rows']} "
        f"({window['first_ts']} .. {window['last_ts']})  drifted columns {summary['drifted_columns']}/"
        f"{summary['columns']} = {summary['drift_share']:.3f} (threshold {summary['drift_share_threshold']:g}): "
        f"{verdict}"
    )
    if summary.get("sample"):
        sample = summary["sample"]
        lines.append(f"analysed a uniform random sample of {sample['rows']} of the window's {sample['window_rows']} "
                     f"rows (--max-rows {sample['max_rows']}, --seed {sample['seed']})")
    if summary["lines_skipped"]:
        lines.append(f"{summary['lines_skipped']} unparseable log line(s) skipped")
    windows = summary.get("windows", [])
    if len(windows) > 1:
        lines.append("windows (the verdict is the worst of them):")
        width = max(len(w["description"]) for w in windows)
        for w in windows:
            if w["verdict"] is None:
                said = f"skipped: {w['skipped']}"
            else:
                said = (f"share {w['drift_share']:.3f}  {w['verdict']['level'].upper()}"
                        + (f" ({', '.join(w['drifted_columns'])})" if w["drifted_columns"] else ""))
            lines.append(f"  {w['description'].ljust(width)}  {w['rows']:>8} rows  {said}")
    verdict = summary.get("verdict")
    if verdict:
        lines.append(f"verdict: {verdict['level'].upper()}: {verdict['message']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    started = time.perf_counter()
    choice = choose_window(args.since, args.last, args.whole_log)
    request = ReadRequest(model=args.model, log=args.log, out=args.out, state=args.state, choice=choice,
                          max_rows=args.max_rows, seed=args.seed, min_rows=args.min_rows,
                          engine=Engine.from_args(args))
    inputs = read_inputs(request)
    model, since = inputs.model, choice.since
    timings = dict(inputs.seconds)
    mark = time.perf_counter()
    import evidently.presets  # noqa: F401  (seconds: timed apart from the report itself)

    timings["import_evidently"] = time.perf_counter() - mark
    workspace = Path(args.workspace) if args.workspace else inputs.out_dir / "workspace"
    run_at = datetime.now(timezone.utc)
    mark = time.perf_counter()
    try:
        snapshot = run_report(
            inputs.reference, inputs.current, inputs.numerical, inputs.categorical,
            drift_share=args.drift_share, timestamp=run_at.replace(tzinfo=None),
        )
        result = extract(snapshot.dict())
    except ValueError as exc:
        raise DriftError(f"Evidently could not compare the data: {exc}") from None
    verdict = judge(result, important_inputs(model.metadata))
    timings["report"] = time.perf_counter() - mark
    mark = time.perf_counter()
    windows = [main_window(inputs, result, verdict, choice.description), *judge_recent(args, request, inputs)]
    verdict = combine(windows)
    timings["recent_windows"] = time.perf_counter() - mark
    attribution = None
    if getattr(args, "attribution_rows", 0):
        from monitoring.drift.attribution import global_view  # the model store and the pipeline: only when asked

        mark = time.perf_counter()
        attribution = global_view(model.tag, inputs.reference, inputs.current, rows=args.attribution_rows)
        timings["attribution"] = time.perf_counter() - mark

    mark = time.perf_counter()
    files = run_files(inputs.out_dir, model.name, run_at)
    first_ts, last_ts = inputs.first_ts, inputs.last_ts
    summary = {
        "model": model.name,
        "model_version": model.version,
        "task": model.task,
        "ts": run_at.timestamp(),
        "generated_at": run_at.isoformat(),
        "log": str(inputs.log_path),
        **request.engine.summary(),
        "lines_skipped": inputs.skipped_lines,
        "other_versions": inputs.other_versions,
        "rows": inputs.rows,
        "sample": inputs.sample,
        "reference_rows": len(inputs.reference),
        "window": {
            "description": choice.description,
            "since": since.isoformat() if since else None,
            "last": choice.last,
            "first_ts": first_ts,
            "last_ts": last_ts,
        },
        **result,
        "windows": [w.as_dict() for w in windows],
        "verdict": verdict.as_dict(),
        "attribution": attribution,
        "report_html": str(files.html),
    }
    save_html(snapshot, files.html, summary)
    project_id, runs = add_to_workspace(
        workspace, snapshot, [*inputs.numerical, *inputs.categorical],
        run_name=f"{model.tag} {first_ts}..{last_ts}", summary=summary, column_threshold=column_threshold(summary),
    )
    timings["html_and_workspace"] = time.perf_counter() - mark
    summary.update({
        "workspace": str(workspace),
        "project_id": project_id,
        "workspace_runs": runs,
        "seconds": {**{k: round(v, 3) for k, v in timings.items()}, "total": None},
    })
    summary["seconds"]["total"] = round(time.perf_counter() - started, 3)  # after Python and the CLI's imports
    write_json_atomic(files.json, summary)
    link_latest(files.html, files.latest_html)
    link_latest(files.json, files.latest_json)
    update_state(inputs.state_path, model.name, state_entry(summary))
    print(format_table(summary))
    print(f"report {files.html} (latest: {files.latest_html})\nsummary {files.json} (latest: {files.latest_json})\n"
          f"workspace {workspace} (project {model.name}, {runs} runs)")
    code = exit_code(verdict, args.fail_on_drift, args.strict)
    return summary, code
