"""One run of the quality job: join, measure each variant, compare the variants of each endpoint, estimate each
variant's quality without outcomes, write the reports, the workspace snapshots and the state the service exports as
gauges."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.abtest import VERDICT_CODES, compare
from monitoring.quality.cli import DEFAULT_MIN_ROWS, DEFAULT_REPORT_ROWS, DEFAULT_SEED
from monitoring.quality.errors import QualityError
from monitoring.quality.estimate_html import write_estimate_html
from monitoring.quality.groups import group_quality, regressions, store_info
from monitoring.quality.join import Joined, join
from monitoring.quality.variants import Variant, estimate_input, report_samples, rows_of, split, task_cells
from monitoring.quality.window_estimates import AUTO, state_entries, window_estimates
from training.schema import TASKS


def ab_pairs(joined: Joined, variants: list[Variant]) -> list[dict[str, Any]]:
    """Every pair of variants that served the same endpoint in the window, on the predictions with an outcome."""
    arms: dict[str, dict[str, np.ndarray]] = {}  # endpoint -> arm -> positions with an outcome
    for variant in variants:
        labelled = variant.positions[joined.outcome[variant.positions] >= 0]
        cell_of = joined.cell[labelled]
        for code in variant.cells:
            endpoint = joined.cells.at[code, "endpoint"]
            mine = labelled[cell_of == code]
            if len(mine) and endpoint is not None:
                previous = arms.setdefault(endpoint, {}).get(variant.key.arm)
                arms[endpoint][variant.key.arm] = mine if previous is None else np.concatenate([previous, mine])
    results = []
    for endpoint in sorted(arms):
        by_arm = arms[endpoint]
        for a, b in itertools.combinations(sorted(by_arm), 2):
            rows_a, rows_b = by_arm[a], by_arm[b]
            comparisons = compare(a, b, joined.outcome[rows_a].astype(np.int64), joined.probability[rows_a],
                                  joined.outcome[rows_b].astype(np.int64), joined.probability[rows_b])
            results.append({"endpoint": endpoint, "a": a, "b": b, "comparisons": [c.as_dict() for c in comparisons]})
    return results


def measure(joined: Joined, task: str, since: datetime | None = None,
            min_rows: int = DEFAULT_MIN_ROWS) -> tuple[dict[str, Any], list[Variant]]:
    """The summary (every variant's quality and the A/B verdicts), and the variants with their predictions. No
    outcome yet is no error: the variants then carry counts and the summary a note (the estimates follow)."""
    if task not in TASKS:
        raise QualityError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    in_task, missing = task_cells(joined, task)
    variants = split(joined, in_task)
    predictions = sum(len(v.positions) for v in variants)
    if not predictions:
        raise QualityError(f"no {task} predictions in the window: nothing to measure or estimate")
    with_outcome = sum(int((joined.outcome[v.positions] >= 0).sum()) for v in variants)
    groups = []
    for variant in variants:
        rows = rows_of(joined, variant.positions)
        endpoints = sorted(str(e) for e in joined.cells.loc[variant.cells, "endpoint"].dropna().unique())
        info = store_info(variant.key.model, variant.key.version)
        groups.append(group_quality(variant.key, rows, endpoints, info, min_rows))
    stamps = joined.ts[in_task[joined.cell]]
    first, last = (pd.Timestamp(int(stamps.min()), unit="us", tz="UTC"),
                   pd.Timestamp(int(stamps.max()), unit="us", tz="UTC")) if len(stamps) else (None, None)
    eligible = [v for v, g in zip(variants, groups) if not g["below_min_rows"]]
    summary = {
        "task": task,
        "ts": time.time(),
        "window": {"since": since.isoformat() if since else None,
                   "first": first.isoformat() if first is not None else None,
                   "last": last.isoformat() if last is not None else None},
        "predictions": predictions,
        "with_outcome": with_outcome,
        "outcomes": joined.outcomes,
        "unmatched_outcomes": joined.unmatched,
        "unmatched_examples": joined.unmatched_examples,
        "predictions_without_id": joined.without_id,
        "repeated_prediction_ids": joined.repeated_ids,
        "skipped_lines": joined.skipped_lines,
        "models_not_in_store": missing,
        "min_rows": min_rows,
        "groups": groups,
        "ab": ab_pairs(joined, eligible),
        "note": None if with_outcome else (
            f"no outcome yet for these predictions ({joined.outcomes} outcomes in the store): estimates only"),
    }
    return summary, variants


def state_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """What the service exports as gauges (serving/core/quality_gauges.py): variants under --min-rows are left out."""
    models = []
    for group in summary["groups"]:
        if group["below_min_rows"]:
            continue
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


class _Clock:
    """Wall and CPU seconds per phase: on a busy machine the CPU time is the figure that compares."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall[name] = round(time.perf_counter() - wall, 3)
        self.cpu[name] = round(time.process_time() - cpu, 3)


@dataclass(frozen=True)
class Options:
    """How the job reads and reports, beside where (the CLI's flags)."""

    tolerance: float = 0.02
    min_rows: int = DEFAULT_MIN_ROWS
    report_rows: int = DEFAULT_REPORT_ROWS
    seed: int = DEFAULT_SEED
    chunk: str = AUTO


def run(log: Path, outcomes: Path, task: str, since: datetime | None, out_dir: Path, state_path: Path,
        workspace: Path | None, options: Options = Options()) -> tuple[dict[str, Any], list[str]]:
    """The whole job; returns the summary and the regressions found."""
    from monitoring.drift.state import update_state  # the drift job's locked, atomic state writer

    if task not in TASKS:
        raise QualityError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    clock = _Clock()
    with clock.phase("read_and_join"):
        joined = join(log, outcomes, since)
    with clock.phase("metrics_and_verdicts"):
        summary, variants = measure(joined, task, since, options.min_rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    with clock.phase("estimate"):  # before outcomes arrive, and beside them after
        eligible = [v for v, g in zip(variants, summary["groups"]) if not g["below_min_rows"]]  # as the gauges
        frame, columns = estimate_input(joined, eligible)
        summary["estimate"] = window_estimates(frame, options.chunk, columns)
        del frame, columns
        summary["estimate"]["html"] = str(write_estimate_html(summary, out_dir / f"quality_{task}_estimate.html"))
    if workspace is not None:
        from monitoring.quality.report import evidently_reports

        with clock.phase("evidently"):
            summary["report_rows"] = options.report_rows
            samples = report_samples(joined, variants, summary["groups"], options.report_rows, options.seed)
            del joined, variants  # Evidently works on the samples only
            summary["reports"] = evidently_reports(samples, out_dir, workspace, summary)
    summary["seconds"], summary["cpu_seconds"] = clock.wall, clock.cpu
    found = regressions(summary["groups"], options.tolerance)
    summary["regressions"] = found
    (out_dir / f"quality_{task}.json").write_text(json.dumps(summary, indent=2, default=str))
    update_state(state_path, task, state_entry(summary))
    return summary, found


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def format_table(summary: dict[str, Any]) -> str:
    """The variants as a table whose columns fit their longest value, then the verdicts; variants under
    --min-rows are named on one line instead of filling the table with dashes."""
    header = ["variant", "rows", "outcomes", "share", "auc", "held", "logloss", "brier", "prec", "recall"]
    body = []
    for g in summary["groups"]:
        if g["below_min_rows"]:
            continue
        m, h = g["metrics"] or {}, g["held_out"] or {}
        body.append([g["arm"], str(g["predictions"]), str(g["with_outcome"]), f"{g['outcome_share']:.1%}",
                     _number(m.get("roc_auc")), _number(h.get("roc_auc")), _number(m.get("log_loss")),
                     _number(m.get("brier")), _number(m.get("precision")), _number(m.get("recall"))])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in [header, *body]]
    left_out = [g for g in summary["groups"] if g["below_min_rows"]]
    if left_out:
        listed = ", ".join(f"{g['arm']} ({g['predictions']} rows, {g['with_outcome']} outcomes)" for g in left_out)
        lines.append(f"left out: {len(left_out)} variant(s) under {summary['min_rows']} predictions (--min-rows): "
                     f"{listed}")
    for pair in summary["ab"]:
        for c in pair["comparisons"]:
            more = f", {c['outcomes_needed']} more outcomes needed" if c["verdict"] == "not yet significant" and \
                c["outcomes_needed"] else ""
            interval = c["always_valid"]
            lines.append(f"{pair['endpoint']} {c['a']} vs {c['b']}: {c['metric']} difference {c['difference']} "
                         f"(always-valid CI {interval}) -> {c['verdict']}{more}")
    for report in summary.get("reports", []):
        sample = report["sample"]
        lines.append(f"Evidently report {report['html']}: {sample['rows']} of {sample['of']} outcomes of "
                     f"{report['arm']} (seeded sample, --report-rows {summary['report_rows']}, --seed {sample['seed']})")
    lines.append(f"outcomes {summary['outcomes']}, matched {summary['with_outcome']}, "
                 f"unmatched {summary['unmatched_outcomes']}")
    return "\n".join(lines)
