"""Data drift of a served model: its logged inputs and predictions over a window against the reference sample saved
with the model, as an Evidently report.

    python -m monitoring.drift --model purchase_gbm                       # the whole log, the latest version
    python -m monitoring.drift --model purchase_gbm:v3 --last 10000       # the last 10,000 rows of that version
    python -m monitoring.drift --model purchase_gbm --since 24h --fail-on-drift   # exit 1 on dataset drift

What it reads: the prediction log (PREDICTION_LOG_PATH, rotated files included) and the model store. Only rows of
the requested (or resolved `latest`) version are analysed: rows of other versions of the same model are counted
and reported, never mixed in, because each version has its own reference sample. Lines that do not parse (a torn
last line while a worker writes) are skipped and counted.

What it writes, in --out (default: the folder of DRIFT_STATE_PATH):
- `<model>_drift.html`: the Evidently report; `<model>_drift.json`: the summary (per column: method, score,
  threshold, drifted; the share of drifted columns and the dataset drift flag; rows, window, version, lines
  skipped);
- a snapshot in the Evidently workspace (--workspace, default <out>/workspace), one project per model, whose
  dashboard plots the drift share and every column's score over time (`evidently ui --workspace ...`);
- the model's entry in DRIFT_STATE_PATH (merged with other models' entries, replaced atomically), which the
  service exports as `serving_drift_*` gauges on /metrics.

Method: Evidently's DataDriftPreset with the columns typed from the model's saved input schema. With a reference
of more than 1,000 rows Evidently uses the normed Wasserstein distance for numerical columns and the
Jensen-Shannon distance for categorical ones, each with threshold 0.1. The predicted probability is analysed as
the column `prediction_probability`. Dataset drift is declared when the share of drifted columns reaches
--drift-share (default 0.3, i.e. 3 of the 8 purchase columns: Evidently's own default of 0.5 would need half of
all columns to move and misses a shift in the two inputs that matter most plus the prediction they drive).
Windows under --min-rows (default 1,000) are refused: on training-like traffic, 200-row windows crossed the 0.3
share in 3 of 5 draws, 500-row windows flagged single columns, 1,000-row windows flagged nothing.

Exit codes: 0 done (also when drift is found, unless --fail-on-drift), 1 dataset drift with --fail-on-drift,
2 the job could not run (no log, unknown model, too few rows, ...), with a one-line message.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from monitoring.predictlog import iter_records, log_files
from settings import get_settings

PREDICTION_COLUMN = "prediction_probability"  # the log's `probability` and the reference's `prediction`
DEFAULT_DRIFT_SHARE = 0.3
# Measured on the purchase models (5 windows each of training-like traffic): at 200 rows 3 of 5 windows crossed the
# 0.3 dataset-drift share (one flagged 6 of 8 columns), at 500 one window flagged 2 columns, from 1,000 rows none.
DEFAULT_MIN_ROWS = 1_000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class DriftError(Exception):
    """The job cannot run; the message is shown to the user as one line."""


# --------------------------------------------------------------------------------------------- the window


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2026-11-22T10:00:00+00:00`, `2026-11-22` (naive times are UTC) or a duration back from now: `90m`, `24h`."""
    now = now or datetime.now(timezone.utc)
    match = _DURATION.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DriftError(
            f"--since {text!r}: expected an ISO 8601 time (2026-11-22T10:00:00Z) or a duration such as 30m, 24h, 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass
class Window:
    """The logged rows of one model version chosen for analysis, and what was left out."""

    frame: pd.DataFrame
    version: str
    skipped_lines: int = 0
    other_versions: dict[str, int] = field(default_factory=dict)
    since: datetime | None = None
    last: int | None = None

    @property
    def rows(self) -> int:
        return len(self.frame)

    def bounds(self) -> tuple[str | None, str | None]:
        if self.frame.empty:
            return None, None
        stamps = self.frame["ts"]
        return stamps.min().isoformat(), stamps.max().isoformat()


def load_window(
    log_path: Path, name: str, version: str, *, since: datetime | None = None, last: int | None = None
) -> Window:
    """Rows of `name` from the log (rotated files included), in the time window, split by version."""
    if not log_files(log_path):
        raise DriftError(f"no prediction log at {log_path} (set PREDICTION_LOG_PATH or pass --log)")
    stats: dict[str, int] = {}
    records = [r for r in iter_records(log_path, stats) if r.get("model_name") == name]
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]"), "model_version": []})
    else:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601", errors="coerce")
        frame = frame.sort_values("ts", kind="stable")
        if since is not None:
            frame = frame[frame["ts"] >= pd.Timestamp(since)]
        frame["model_version"] = frame["model_version"].astype(str)
    mine = frame["model_version"] == version
    others = frame.loc[~mine, "model_version"].value_counts()
    current = frame[mine]
    if last is not None:
        current = current.tail(last)
    return Window(
        frame=current.reset_index(drop=True),
        version=version,
        skipped_lines=stats.get("skipped", 0),
        other_versions={str(k): int(v) for k, v in others.items()},
        since=since,
        last=last,
    )


def describe_others(window: Window) -> str:
    listed = ", ".join(f"{v} ({n} rows)" for v, n in sorted(window.other_versions.items(), key=lambda kv: -kv[1]))
    return f"{sum(window.other_versions.values())} rows of other versions left out: {listed}"


# ------------------------------------------------------------------------------------------ the data frames


def column_types(schema: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(numerical, categorical) input columns of a saved input schema, in schema order."""
    categorical = [c for c in schema["columns"] if c in set(schema.get("categorical", []))]
    categorical += [c for c, s in schema["columns"].items() if s["type"] == "string" and c not in categorical]
    numerical = [c for c in schema["columns"] if c not in categorical]
    return numerical, categorical


def _typed(frame: pd.DataFrame, numerical: list[str], categorical: list[str], source: str) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for column in numerical:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in categorical:
        values = frame[column]
        out[column] = values.where(values.isna(), values.astype(str)).astype(object)
    empty = [c for c in out.columns if out[c].isna().all()]
    if empty:
        raise DriftError(f"{source}: column(s) {', '.join(empty)} hold no values; cannot measure their drift")
    return out.reset_index(drop=True)


def prepare(
    schema: dict[str, Any], reference: pd.DataFrame, window: pd.DataFrame, *, source: str = "log"
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """Reference and current frames with the same typed columns, the prediction included as a numerical column."""
    numerical, categorical = column_types(schema)
    features = numerical + categorical
    missing = [c for c in [*features, "probability"] if c not in window.columns]
    if missing:
        raise DriftError(f"{source}: logged rows lack column(s) {', '.join(missing)} of the model's input schema")
    missing = [c for c in [*features, "prediction"] if c not in reference.columns]
    if missing:
        raise DriftError(f"the model's reference sample lacks column(s) {', '.join(missing)}")
    reference = reference.rename(columns={"prediction": PREDICTION_COLUMN})
    current = window.rename(columns={"probability": PREDICTION_COLUMN})
    numerical = [*numerical, PREDICTION_COLUMN]
    return (
        _typed(reference, numerical, categorical, "reference sample"),
        _typed(current, numerical, categorical, source),
        numerical,
        categorical,
    )


# ------------------------------------------------------------------------------------------------ Evidently


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    *,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    timestamp: datetime | None = None,
):
    """The Evidently snapshot of a DataDriftPreset run (imports Evidently, which takes seconds)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    # Both lists always: otherwise small-integer columns are inferred categorical and unlisted floats dropped.
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    report = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True)  # tests carry the flags
    return report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
        timestamp=timestamp,
    )


def extract(snapshot_dict: dict[str, Any]) -> dict[str, Any]:
    """Dataset drift and per-column results from `snapshot.dict()`."""
    status = {
        t["metric_config"]["metric_id"]: str(getattr(t["status"], "value", t["status"]))
        for t in snapshot_dict.get("tests", [])
    }
    out: dict[str, Any] = {"features": {}}
    for metric in snapshot_dict["metrics"]:
        config = metric["config"]
        if config["type"] == "evidently:metric_v2:DriftedColumnsCount":
            out["drifted_columns"] = int(metric["value"]["count"])
            out["drift_share"] = float(metric["value"]["share"])
            out["drift_share_threshold"] = float(config["drift_share"])
            # Evidently's test is "share < drift_share"; it fails exactly when the share reaches the threshold.
            out["dataset_drift"] = status.get(metric["id"], "") == "FAIL" or out["drift_share"] >= config["drift_share"]
        elif config["type"] == "evidently:metric_v2:ValueDrift":
            score = float(metric["value"])
            out["features"][config["column"]] = {
                "score": score if math.isfinite(score) else None,
                "method": config["method"],
                "threshold": float(config["threshold"]),
                "drifted": status.get(metric["id"]) == "FAIL",
            }
    if "drift_share" not in out:
        raise DriftError("the Evidently report holds no DriftedColumnsCount metric")
    out["columns"] = len(out["features"])
    return out


def add_to_workspace(path: Path, project_name: str, snapshot, columns: list[str], run_name: str) -> tuple[str, int]:
    """Add the snapshot to the model's project (created with its dashboard on first use); (project id, runs)."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(path))  # opens an existing workspace too
    found = workspace.search_project(project_name)
    if found:
        project = found[0]
    else:
        project = workspace.create_project(project_name, description=f"Data drift of {project_name}'s inputs")
        dashboard = project.dashboard
        # Add the tab, then panels without tab=: add_panel(tab=...) on an existing tab duplicates panels (0.7.23).
        dashboard.add_tab("Drift")
        share = PanelMetric(legend="drift share", metric="DriftedColumnsCount", metric_labels={"value_type": "share"})
        dashboard.add_panel(counter_panel(title="Share of drifted columns (last run)", size="half",
                                          aggregation="last", values=[share]))
        dashboard.add_panel(line_plot_panel(title="Share of drifted columns", size="half", values=[share]))
        dashboard.add_panel(line_plot_panel(
            title="Drift score per column (Wasserstein normed / Jensen-Shannon; drifted above 0.1)",
            size="full",
            values=[PanelMetric(legend=c, metric="ValueDrift", metric_labels={"column": c}) for c in columns],
        ))
    workspace.add_run(project.id, snapshot, include_data=False, name=run_name)
    return str(project.id), len(workspace.list_runs(project.id))


# --------------------------------------------------------------------------------------------- the outputs


def update_state(path: Path, model_name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Merge one model's entry into the drift state file: locked read-modify-write, atomic replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text())
            if not isinstance(state, dict):
                state = {}
        except (FileNotFoundError, ValueError):
            state = {}
        state[model_name] = entry
        write_json_atomic(path, state)
    return state


def write_json_atomic(path: Path, payload: Any) -> None:
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            json.dump(payload, handle, indent=2, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600; the service may run as another user
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def state_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """What the service exports as gauges: one model's latest run."""
    return {
        "model_version": summary["model_version"],
        "ts": summary["ts"],
        "drift_share": summary["drift_share"],
        "drift_share_threshold": summary["drift_share_threshold"],
        "dataset_drift": summary["dataset_drift"],
        "rows": summary["rows"],
        "features": summary["features"],
    }


def format_table(summary: dict[str, Any]) -> str:
    rows = [
        (name, r["method"], "nan" if r["score"] is None else f"{r['score']:.4f}", f"{r['threshold']:g}",
         "DRIFTED" if r["drifted"] else "no")
        for name, r in summary["features"].items()
    ]
    header = ("feature", "method", "score", "threshold", "drifted")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    window = summary["window"]
    verdict = "DATASET DRIFT" if summary["dataset_drift"] else "no dataset drift"
    lines.append(
        f"{summary['model']}:{summary['model_version']}  rows {summary['rows']} "
        f"({window['first_ts']} .. {window['last_ts']})  drifted columns {summary['drifted_columns']}/"
        f"{summary['columns']} = {summary['drift_share']:.3f} (threshold {summary['drift_share_threshold']:g}): "
        f"{verdict}"
    )
    if summary["lines_skipped"]:
        lines.append(f"{summary['lines_skipped']} unparseable log line(s) skipped")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- the job


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


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    started = time.perf_counter()
    settings = get_settings()
    log_path = Path(args.log or settings.prediction_log_path)
    out_dir = Path(args.out or Path(settings.drift_state_path).parent)
    state_path = Path(args.state or settings.drift_state_path)
    workspace = Path(args.workspace) if args.workspace else out_dir / "workspace"
    since = parse_since(args.since) if args.since else None

    if not log_files(log_path):  # before the model store: the cheapest check first
        raise DriftError(f"no prediction log at {log_path} (set PREDICTION_LOG_PATH or pass --log)")
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    model = resolve_model(args.model)
    timings["load_model"] = time.perf_counter() - mark
    mark = time.perf_counter()
    window = load_window(log_path, model.name, model.version, since=since, last=args.last)
    if window.other_versions:
        print(f"note: {model.name}: analysing version {model.version} only; {describe_others(window)}",
              file=sys.stderr)
    if window.rows < args.min_rows:
        where = f" since {since.isoformat()}" if since else ""
        others = f"; {describe_others(window)} (pass --model {model.name}:VERSION)" if window.other_versions else ""
        raise DriftError(
            f"too few rows: {window.rows} logged rows of {model.tag}{where} in {log_path}, at least "
            f"{args.min_rows} needed (--min-rows){others}"
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
    timings["report"] = time.perf_counter() - mark

    mark = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / f"{model.name}_drift.html"
    json_path = out_dir / f"{model.name}_drift.json"
    snapshot.save_html(str(html_path))  # a str: save_html(Path) writes nothing in 0.7.23
    first_ts, last_ts = window.bounds()
    project_id, runs = add_to_workspace(
        workspace, model.name, snapshot, [*numerical, *categorical], run_name=f"{model.tag} {first_ts}..{last_ts}"
    )
    timings["html_and_workspace"] = time.perf_counter() - mark
    summary = {
        "model": model.name,
        "model_version": model.version,
        "task": model.task,
        "ts": run_at.timestamp(),
        "generated_at": run_at.isoformat(),
        "log": str(log_path),
        "lines_skipped": window.skipped_lines,
        "other_versions": window.other_versions,
        "rows": window.rows,
        "reference_rows": len(reference),
        "window": {
            "since": since.isoformat() if since else None,
            "last": args.last,
            "first_ts": first_ts,
            "last_ts": last_ts,
        },
        **result,
        "report_html": str(html_path),
        "workspace": str(workspace),
        "project_id": project_id,
        "workspace_runs": runs,
        "seconds": {**{k: round(v, 3) for k, v in timings.items()}, "total": None},
    }
    summary["seconds"]["total"] = round(time.perf_counter() - started, 3)  # after Python and bentoml start
    write_json_atomic(json_path, summary)
    update_state(state_path, model.name, state_entry(summary))
    print(format_table(summary))
    print(f"report {html_path}\nsummary {json_path}\nworkspace {workspace} (project {model.name}, {runs} runs)")
    code = 1 if (args.fail_on_drift and summary["dataset_drift"]) else 0
    return summary, code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.drift", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="NAME, NAME:latest or NAME:VERSION from the model store")
    parser.add_argument("--log", help="the prediction log (default: PREDICTION_LOG_PATH)")
    parser.add_argument("--out", help="folder for the HTML report and JSON summary (default: DRIFT_STATE_PATH's)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--last", type=int, metavar="N", help="only the last N logged rows of the version")
    window.add_argument("--since", metavar="TIME", help="only rows logged since TIME (ISO 8601, or 30m, 24h, 7d)")
    parser.add_argument("--fail-on-drift", action="store_true", help="exit 1 when dataset drift is detected")
    parser.add_argument("--min-rows", type=int, default=DEFAULT_MIN_ROWS,
                        help=f"refuse smaller windows, whose scores are mostly noise (default {DEFAULT_MIN_ROWS})")
    parser.add_argument("--drift-share", type=float, default=DEFAULT_DRIFT_SHARE,
                        help=f"share of drifted columns that means dataset drift (default {DEFAULT_DRIFT_SHARE})")
    parser.add_argument("--workspace", help="Evidently workspace folder (default: <out>/workspace)")
    parser.add_argument("--state", help="drift state file read by the service (default: DRIFT_STATE_PATH)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.last is not None and args.last < 1:
        parser.error("--last must be at least 1")
    if args.min_rows < 1:
        parser.error("--min-rows must be at least 1")
    if not 0 < args.drift_share <= 1:
        parser.error("--drift-share must be in (0, 1]")
    try:
        _, code = run(args)
    except DriftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
