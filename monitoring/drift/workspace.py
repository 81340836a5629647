"""The Evidently workspace: one project per model, holding every run's snapshot, with a dashboard of drift over time
(`make dashboard`, or `evidently ui --workspace ...`).

The dashboard is written again at every run, so it always matches this code and the model's columns, and its
last-run panel shows the run just added. Evidently 0.7.23's UI constrains the layout:
- a counter panel shows "no value" for 0 (`value ? value.toFixed(2) : "no value"` in its bundle), so the last
  run's share is a text panel this job writes;
- line series take colours by position from a 6-colour palette that repeats, and panels cannot set colours, so
  each per-column chart holds at most 5 columns plus its threshold line;
- a chart whose values are all equal (one run, one line) labels its y-axis "0": the threshold line beside the share
  avoids that (unless the share equals the threshold);
- panels have no reference lines: thresholds are drawn from the DriftThreshold values stored with each run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitoring.drift.report import verdict

PALETTE_SIZE = 6
COLUMNS_PER_CHART = PALETTE_SIZE - 1  # one colour is the threshold line's
TAB = "Drift"
LAST_RUN_TITLE = "Share of drifted columns (last run)"


def last_run_text(summary: dict[str, Any]) -> tuple[str, str]:
    """(title, description) of the last-run panel."""
    title = f"{LAST_RUN_TITLE}: {summary['drift_share']:.3g}"
    description = (f"{verdict(summary)}. {summary['model']}:{summary['model_version']}, {summary['rows']} rows, "
                   f"{summary['window']['description']}; run at {summary['generated_at']}")
    return title, description


def balanced_chunks(items: list[str], most: int) -> list[list[str]]:
    """Consecutive chunks of at most `most` items whose sizes differ by one at most (8 columns: 4 + 4, so each chart
    uses the palette's first, most distinct colours)."""
    count = -(-len(items) // most)
    base, extra = divmod(len(items), count)
    sizes = [base + (1 if i < extra else 0) for i in range(count)]
    starts = [sum(sizes[:i]) for i in range(count)]
    return [items[start : start + size] for start, size in zip(starts, sizes)]


def dashboard_panels(columns: list[str], summary: dict[str, Any], column_threshold: float | None) -> list:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel, text_panel

    from monitoring.drift.thresholds import COLUMN_SCORE, DATASET_SHARE

    def threshold_line(applies_to: str, legend: str) -> PanelMetric:
        return PanelMetric(legend=legend, metric="DriftThreshold", metric_labels={"applies_to": applies_to})

    title, description = last_run_text(summary)
    share = summary["drift_share_threshold"]
    panels = [
        text_panel(title=title, description=description, size="half"),
        line_plot_panel(title="Share of drifted columns", size="half", values=[
            PanelMetric(legend="drift share", metric="DriftedColumnsCount", metric_labels={"value_type": "share"}),
            threshold_line(DATASET_SHARE, f"dataset drift at {share:g}"),
        ]),
    ]
    chunks = balanced_chunks(columns, COLUMNS_PER_CHART)
    for number, chunk in enumerate(chunks, 1):
        notes = [f"{number} of {len(chunks)}"] if len(chunks) > 1 else []
        values = [PanelMetric(legend=c, metric="ValueDrift", metric_labels={"column": c}) for c in chunk]
        if column_threshold is not None:  # distances (see report.column_threshold)
            notes.append(f"Wasserstein normed / Jensen-Shannon, drifted at {column_threshold:g}")
            values.append(threshold_line(COLUMN_SCORE, f"threshold {column_threshold:g}"))
        title = "Drift score per column" + (f" ({'; '.join(notes)})" if notes else "")
        panels.append(line_plot_panel(title=title, size="full", values=values))
    return panels


def add_to_workspace(path: Path, snapshot, columns: list[str], run_name: str, summary: dict[str, Any],
                     column_threshold: float | None) -> tuple[str, int]:
    """Add the snapshot to the model's project (created on first use) and write its dashboard; (project id, runs)."""
    from evidently.sdk.models import DashboardModel, DashboardTabModel
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(path))  # opens an existing workspace too
    name = summary["model"]
    found = workspace.search_project(name)
    project = found[0] if found else workspace.create_project(name, description=f"Data drift of {name}'s inputs")
    workspace.add_run(project.id, snapshot, include_data=False, name=run_name)
    panels = dashboard_panels(columns, summary, column_threshold)
    workspace.save_dashboard(project.id, DashboardModel(
        tabs=[DashboardTabModel(title=TAB, panels=[p.id for p in panels])], panels=panels,
    ))
    return str(project.id), len(workspace.list_runs(project.id))
