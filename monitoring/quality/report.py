"""Evidently's classification report per model version (HTML and JSON) and its snapshot in the Evidently workspace,
one project per model beside the drift projects, so quality over time shows in `make dashboard` with drift (its
panels: monitoring/quality/dashboard.py).
Evidently is imported here only: it takes seconds to import and never enters the serving path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

def _project(workspace, name: str):
    found = workspace.search_project(name)
    if found:
        return found[0]
    return workspace.create_project(name, description="Quality of the served model on true outcomes (POST /v1/feedback) "
                                                      "and estimated before they arrive")


def evidently_reports(labelled: pd.DataFrame, groups: list[dict[str, Any]], out_dir: Path,
                      workspace_path: Path, estimates: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One ClassificationPreset report per model version that has outcomes of both classes; every group's run in
    its model's workspace project carries its label-free estimate and held-out values (monitoring/quality/dashboard.py),
    also before any outcome."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset
    from evidently.ui.workspace import Workspace

    from monitoring.quality.dashboard import describe, run_metrics, save_dashboard

    workspace = Workspace.create(str(workspace_path))  # opens an existing workspace too
    by_key = {(e["model_name"], e["model_version"], e["alias"], e["variant"]): e for e in estimates or []}
    written = []
    lines: dict[str, tuple[Any, list[str]]] = {}
    for group in groups:
        estimate = by_key.get((group["model"], group["version"], group["alias"], group["variant"]))
        extra = run_metrics(estimate, group["held_out"], group["metrics"])
        project = _project(workspace, f"{group['model']} quality")
        lines.setdefault(group["model"], (project, []))[1].append(describe(group, estimate))
        if group["metrics"] is None:
            if extra:  # no outcome yet: the estimate alone
                snapshot = Report(extra, include_tests=False).run(
                    current_data=Dataset.from_pandas(pd.DataFrame({"prediction": [0.0]})), reference_data=None)
                workspace.add_run(project.id, snapshot, include_data=False,
                                  name=f"{group['arm']} (estimate, {group['predictions']} predictions)")
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
        snapshot = Report([ClassificationPreset(probas_threshold=group["threshold"]), *extra], include_tests=False).run(
            current_data=Dataset.from_pandas(frame, data_definition=definition), reference_data=None)
        stem = f"quality_{group['model']}_{group['version']}" + (f"_{group['alias']}" if group["alias"] else "")
        snapshot.save_html(str(out_dir / f"{stem}.html"))
        snapshot.save_json(str(out_dir / f"{stem}.json"))
        workspace.add_run(project.id, snapshot, include_data=False, name=f"{group['arm']} ({len(frame)} outcomes)")
        written.append({"arm": group["arm"], "html": str(out_dir / f"{stem}.html"),
                        "json": str(out_dir / f"{stem}.json"), "project": str(project.id)})
    for project, described in lines.values():
        save_dashboard(workspace, project.id, described)
    return written
