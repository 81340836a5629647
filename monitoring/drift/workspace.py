"""The Evidently workspace: one project per model, holding every run's snapshot, with a dashboard of drift over time
(`evidently ui --workspace ...`, or `make dashboard`)."""

from __future__ import annotations

from pathlib import Path


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
