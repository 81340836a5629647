"""One run of the quality job: join, measure each variant, compare the variants of each endpoint, write the report,
the workspace snapshot and the state the service exports as gauges."""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.abtest import VERDICT_CODES, compare
from monitoring.quality.errors import QualityError
from monitoring.quality.estimate_html import write_estimate_html
from monitoring.quality.groups import GROUP_KEYS, arm_names, group_quality, regressions, store_info
from monitoring.quality.join import Joined, join
from monitoring.quality.window_estimates import AUTO, state_entries, window_estimates
from training.schema import TASKS


def _task_rows(joined: Joined, task: str) -> tuple[pd.DataFrame, list[str]]:
    """The predictions of models of `task` (from the store's metadata), and the models the store does not hold."""
    frame = joined.predictions
    if frame.empty:
        return frame, []
    keys = frame[["model_name", "model_version"]].drop_duplicates()
    mine, missing = [], []
    for name, version in keys.itertuples(index=False):
        info = store_info(str(name), str(version))
        if info is None:
            missing.append(f"{name}:{version}")
        elif info.task == task:
            mine.append((name, version))
    wanted = pd.MultiIndex.from_tuples(mine, names=["model_name", "model_version"]) if mine else None
    if wanted is None:
        return frame.iloc[:0], missing
    return frame[pd.MultiIndex.from_frame(frame[["model_name", "model_version"]]).isin(wanted)], missing


def ab_pairs(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Every pair of variants that served the same endpoint in the window, on the rows that have an outcome."""
    labelled = frame[frame["outcome"].notna()]
    results = []
    for endpoint, rows in labelled.groupby("endpoint", sort=True):
        arms = {arm: part for arm, part in rows.groupby(arm_names(rows), sort=True)}
        for a, b in itertools.combinations(sorted(arms), 2):
            comparisons = compare(
                a, b,
                arms[a]["outcome"].to_numpy(np.int64), arms[a]["probability"].to_numpy(np.float64),
                arms[b]["outcome"].to_numpy(np.int64), arms[b]["probability"].to_numpy(np.float64),
            )
            results.append({"endpoint": endpoint, "a": a, "b": b,
                            "comparisons": [c.as_dict() for c in comparisons]})
    return results


def measure(joined: Joined, task: str, since: datetime | None = None, chunk: str = AUTO) -> dict[str, Any]:
    if task not in TASKS:
        raise QualityError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    frame, missing = _task_rows(joined, task)
    if not len(frame):
        raise QualityError(f"no {task} predictions in the window: nothing to measure or estimate")
    with_outcome = int(frame["outcome"].notna().sum())
    keyed = frame.assign(alias=frame["alias"].where(frame["alias"].notna(), ""),
                         variant=frame["variant"].where(frame["variant"].notna(), ""))
    groups = []
    for _, rows in keyed.groupby(GROUP_KEYS, sort=True, dropna=False):
        rows = rows.replace({"alias": {"": None}, "variant": {"": None}})
        info = store_info(str(rows["model_name"].iloc[0]), str(rows["model_version"].iloc[0]))
        groups.append(group_quality(rows, info))
    stamps = frame["ts"]
    return {
        "task": task,
        "ts": time.time(),
        "window": {"since": since.isoformat() if since else None,
                   "first": stamps.min().isoformat() if len(stamps) else None,
                   "last": stamps.max().isoformat() if len(stamps) else None},
        "predictions": int(len(frame)),
        "with_outcome": with_outcome,
        "outcomes": joined.outcomes,
        "unmatched_outcomes": joined.unmatched,
        "unmatched_examples": joined.unmatched_examples,
        "predictions_without_id": joined.without_id,
        "skipped_lines": joined.skipped_lines,
        "models_not_in_store": missing,
        "groups": groups,
        "ab": ab_pairs(frame),
        # Before outcomes arrive (and beside them after): monitoring/quality/window_estimates.py
        "estimate": window_estimates(frame, chunk),
        "note": None if with_outcome else (
            f"no outcome yet for these predictions ({joined.outcomes} outcomes in the store): estimates only"),
    }


def state_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """What the service exports as gauges (serving/core/quality_gauges.py)."""
    models = []
    for group in summary["groups"]:
        values = {"outcome_share": group["outcome_share"], "rows_with_outcome": group["with_outcome"]}
        for metric in ("roc_auc", "log_loss", "brier", "precision", "recall"):
            if group["metrics"] and metric in group["metrics"]:
                values[metric] = group["metrics"][metric]
        models.append({"model": group["model"], "version": group["version"], "alias": group["alias"],
                       "metrics": values})
    verdicts = [
        {"endpoint": pair["endpoint"], "a": pair["a"], "b": pair["b"], "metric": c["metric"],
         "verdict": c["verdict"], "code": VERDICT_CODES[c["verdict"]]}
        for pair in summary["ab"] for c in pair["comparisons"]
    ]
    return {"ts": summary["ts"], "models": models, "ab": verdicts,
            "estimates": state_entries(summary["estimate"])}


def run(log: Path, outcomes: Path, task: str, since: datetime | None, out_dir: Path, state_path: Path,
        workspace: Path | None, tolerance: float, chunk: str = AUTO) -> tuple[dict[str, Any], list[str]]:
    """The whole job; returns the summary and the regressions found."""
    from monitoring.drift.state import update_state  # the drift job's locked, atomic state writer

    if task not in TASKS:
        raise QualityError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    joined = join(log, outcomes, since)
    timings["read_and_join"] = time.perf_counter() - mark
    mark = time.perf_counter()
    summary = measure(joined, task, since, chunk)
    timings["metrics_and_verdicts"] = time.perf_counter() - mark - summary["estimate"]["seconds"]
    out_dir.mkdir(parents=True, exist_ok=True)
    mark = time.perf_counter()
    summary["estimate"]["html"] = str(write_estimate_html(summary, out_dir / f"quality_{task}_estimate.html"))
    timings["estimate"] = summary["estimate"]["seconds"] + time.perf_counter() - mark
    if workspace is not None:
        from monitoring.quality.report import evidently_reports

        mark = time.perf_counter()
        labelled = joined.predictions[joined.predictions["outcome"].notna()]
        summary["reports"] = evidently_reports(labelled, summary["groups"], out_dir, workspace,
                                               summary["estimate"]["groups"])
        timings["evidently"] = time.perf_counter() - mark
    summary["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    found = regressions(summary["groups"], tolerance)
    summary["regressions"] = found
    (out_dir / f"quality_{task}.json").write_text(json.dumps(summary, indent=2, default=str))
    update_state(state_path, task, state_entry(summary))
    return summary, found


def format_table(summary: dict[str, Any]) -> str:
    lines = [f"{'variant':<44} {'rows':>8} {'outcomes':>8} {'share':>6} {'auc':>7} {'held':>7} "
             f"{'logloss':>8} {'brier':>7} {'prec':>6} {'recall':>6}"]
    for g in summary["groups"]:
        m, h = g["metrics"] or {}, g["held_out"] or {}
        def fmt(value, width):  # noqa: E306
            return f"{value:>{width}.4f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"
        lines.append(f"{g['arm']:<44} {g['predictions']:>8} {g['with_outcome']:>8} {g['outcome_share']:>6.1%} "
                     f"{fmt(m.get('roc_auc'), 7)} {fmt(h.get('roc_auc'), 7)} {fmt(m.get('log_loss'), 8)} "
                     f"{fmt(m.get('brier'), 7)} {fmt(m.get('precision'), 6)} {fmt(m.get('recall'), 6)}")
    for pair in summary["ab"]:
        for c in pair["comparisons"]:
            more = f", {c['outcomes_needed']} more outcomes needed" if c["verdict"] == "not yet significant" and \
                c["outcomes_needed"] else ""
            interval = c["always_valid"]
            lines.append(f"{pair['endpoint']} {c['a']} vs {c['b']}: {c['metric']} difference {c['difference']} "
                         f"(always-valid CI {interval}) -> {c['verdict']}{more}")
    lines.append(f"outcomes {summary['outcomes']}, matched {summary['with_outcome']}, "
                 f"unmatched {summary['unmatched_outcomes']}")
    return "\n".join(lines)
