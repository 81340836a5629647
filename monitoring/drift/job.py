"""The drift job: resolve the model, read the window, run the report, write the outputs (HTML, JSON summary,
workspace snapshot, state file) and print the table."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from monitoring.drift.errors import DriftError
from monitoring.drift.frames import prepare
from monitoring.drift.html import save_html
from monitoring.drift.report import column_threshold, extract, run_report
from monitoring.drift.state import state_entry, update_state, write_json_atomic
from monitoring.drift.outputs import link_latest, run_files
from monitoring.drift.verdict import exit_code, important_inputs, judge
from monitoring.drift.window import Engine, choose_window, describe_others, load_window, log_source, require_log
from monitoring.drift.workspace import add_to_workspace
from settings import get_settings


def resolve_model(tag: str):
    """Load the model by tag; unknown models are a DriftError naming the models the store has."""
    import bentoml

    from training.store import load_model

    try:
        return load_model(tag)
    except ValueError as exc:
        raise DriftError(f"invalid model tag {tag!r}: {exc}") from None
    except bentoml.exceptions.NotFound:
        try:
            known = sorted({str(m.tag) for m in bentoml.models.list()})
        except Exception:  # noqa: BLE001 - only to enrich the message
            known = []
        name = tag.split(":", 1)[0]
        versions = [k for k in known if k.split(":", 1)[0] == name]
        if versions:
            hint = f"; {name} has: {', '.join(versions)}"
        elif known:
            hint = f"; the store has: {', '.join(sorted({k.split(':', 1)[0] for k in known}))}"
        else:
            hint = "; the model store is empty (make train)"
        raise DriftError(f"unknown model {tag!r} in the model store{hint}") from None


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
    verdict = summary.get("verdict")
    if verdict:
        lines.append(f"verdict: {verdict['level'].upper()}: {verdict['message']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    started = time.perf_counter()
    settings = get_settings()
    log_path = log_source(args.log or settings.prediction_log_path)
    engine = Engine.from_args(args)
    out_dir = Path(args.out or Path(settings.drift_state_path).parent)
    state_path = Path(args.state or settings.drift_state_path)
    workspace = Path(args.workspace) if args.workspace else out_dir / "workspace"
    choice = choose_window(args.since, args.last, args.whole_log)
    since = choice.since

    require_log(log_path, engine)  # before the model store: the cheapest check first
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    model = resolve_model(args.model)
    timings["load_model"] = time.perf_counter() - mark
    mark = time.perf_counter()
    inputs = list(model.input_schema["columns"])
    window = load_window(log_path, model.name, model.version, since=since, last=choice.last,
                         columns=["ts", "model_version", *inputs, "probability"],
                         max_rows=args.max_rows, seed=args.seed, engine=engine, input_schema=model.input_schema)
    if window.other_versions:
        print(f"note: {model.name}: analysing version {model.version} only; {describe_others(window)}",
              file=sys.stderr)
    if window.rows < args.min_rows:
        where = f" since {since.isoformat()}" if since else ""
        others = f"; {describe_others(window)} (pass --model {model.name}:VERSION)" if window.other_versions else ""
        raise DriftError(
            f"too few rows: {window.rows} logged rows of {model.tag}{where} in {log_path}, window "
            f"{choice.description}, at least {args.min_rows} needed (--min-rows){others}"
        )
    reference, current, numerical, categorical = prepare(
        model.input_schema, model.reference(), window.frame, source=str(log_path)
    )
    timings["read_log"] = time.perf_counter() - mark

    mark = time.perf_counter()
    import evidently.presets  # noqa: F401  (seconds: timed apart from the report itself)

    timings["import_evidently"] = time.perf_counter() - mark
    run_at = datetime.now(timezone.utc)
    mark = time.perf_counter()
    try:
        snapshot = run_report(
            reference, current, numerical, categorical,
            drift_share=args.drift_share, timestamp=run_at.replace(tzinfo=None),
        )
        result = extract(snapshot.dict())
    except ValueError as exc:
        raise DriftError(f"Evidently could not compare the data: {exc}") from None
    verdict = judge(result, important_inputs(model.metadata))
    timings["report"] = time.perf_counter() - mark

    mark = time.perf_counter()
    files = run_files(out_dir, model.name, run_at)
    first_ts, last_ts = window.bounds()
    summary = {
        "model": model.name,
        "model_version": model.version,
        "task": model.task,
        "ts": run_at.timestamp(),
        "generated_at": run_at.isoformat(),
        "log": str(log_path),
        **engine.summary(),
        "lines_skipped": window.skipped_lines,
        "other_versions": window.other_versions,
        "rows": window.rows,
        "sample": window.sample(),
        "reference_rows": len(reference),
        "window": {
            "description": choice.description,
            "since": since.isoformat() if since else None,
            "last": choice.last,
            "first_ts": first_ts,
            "last_ts": last_ts,
        },
        **result,
        "verdict": verdict.as_dict(),
        "report_html": str(files.html),
    }
    save_html(snapshot, files.html, summary)
    project_id, runs = add_to_workspace(
        workspace, snapshot, [*numerical, *categorical], run_name=f"{model.tag} {first_ts}..{last_ts}",
        summary=summary, column_threshold=column_threshold(summary),
    )
    timings["html_and_workspace"] = time.perf_counter() - mark
    summary.update({
        "workspace": str(workspace),
        "project_id": project_id,
        "workspace_runs": runs,
        "seconds": {**{k: round(v, 3) for k, v in timings.items()}, "total": None},
    })
    summary["seconds"]["total"] = round(time.perf_counter() - started, 3)  # after Python and bentoml start
    write_json_atomic(files.json, summary)
    link_latest(files.html, files.latest_html)
    link_latest(files.json, files.latest_json)
    update_state(state_path, model.name, state_entry(summary))
    print(format_table(summary))
    print(f"report {files.html} (latest: {files.latest_html})\nsummary {files.json} (latest: {files.latest_json})\n"
          f"workspace {workspace} (project {model.name}, {runs} runs)")
    code = exit_code(verdict, args.fail_on_drift, args.strict)
    return summary, code
