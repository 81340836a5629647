"""Evidently's classification report per model version (HTML and JSON) and its snapshot in the Evidently workspace,
one project per model beside the drift projects, so quality over time shows in `make dashboard` with drift.
Evidently is imported here only: it takes seconds to import and never enters the serving path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

# Evidently's metric names for the dashboard panels (ClassificationPreset computes all of them).
PANELS = {"RocAuc": "ROC AUC", "LogLoss": "Log loss", "Precision": "Precision at the threshold",
          "Recall": "Recall at the threshold"}


def _project(workspace, name: str):
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    found = workspace.search_project(name)
    if found:
        return found[0]
    project = workspace.create_project(name, description="Quality of the served model on true outcomes (POST /v1/feedback)")
    project.dashboard.add_tab("Quality")
    for metric, title in PANELS.items():  # panels without tab=: add_panel(tab=...) duplicates panels (0.7.23)
        project.dashboard.add_panel(line_plot_panel(title=title, size="half",
                                                    values=[PanelMetric(legend=title, metric=metric)]))
    return project


def evidently_reports(labelled: pd.DataFrame, groups: list[dict[str, Any]], out_dir: Path,
                      workspace_path: Path) -> list[dict[str, Any]]:
    """One ClassificationPreset report per model version that has outcomes of both classes."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(workspace_path))  # opens an existing workspace too
    written = []
    for group in groups:
        if group["metrics"] is None:
            continue
        rows = labelled[(labelled["model_name"] == group["model"]) & (labelled["model_version"] == group["version"])]
        if group["alias"]:
            rows = rows[rows["alias"] == group["alias"]]
        frame = pd.DataFrame({"target": rows["outcome"].astype("int64").to_numpy(),
                              "prediction": rows["probability"].astype("float64").to_numpy()})
        definition = DataDefinition(
            classification=[BinaryClassification(target="target", prediction_probas="prediction")],
            numerical_columns=["prediction"],
        )
        snapshot = Report([ClassificationPreset(probas_threshold=group["threshold"])], include_tests=False).run(
            current_data=Dataset.from_pandas(frame, data_definition=definition), reference_data=None)
        stem = f"quality_{group['model']}_{group['version']}" + (f"_{group['alias']}" if group["alias"] else "")
        snapshot.save_html(str(out_dir / f"{stem}.html"))
        snapshot.save_json(str(out_dir / f"{stem}.json"))
        project = _project(workspace, f"{group['model']} quality")
        workspace.add_run(project.id, snapshot, include_data=False, name=f"{group['arm']} ({len(frame)} outcomes)")
        written.append({"arm": group["arm"], "html": str(out_dir / f"{stem}.html"),
                        "json": str(out_dir / f"{stem}.json"), "project": str(project.id)})
    return written
