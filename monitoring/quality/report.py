"""Evidently's classification report per model version (HTML and JSON) and its snapshot in the Evidently workspace,
one project per model beside the drift projects, so quality over time shows in `make dashboard` with drift (its
panels: monitoring/quality/dashboard.py).
Evidently is imported here only: it takes seconds to import and never enters the serving path."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

HEADER_ID = "quality-report-header"


def _project(workspace, name: str):
    found = workspace.search_project(name)
    if found:
        return found[0]
    return workspace.create_project(name, description="Quality of the served model on true outcomes (POST /v1/feedback) "
                                                      "and estimated before they arrive")


def _header(group: dict[str, Any], sample: dict[str, int], summary: dict[str, Any]) -> str:
    """What the page is about, above Evidently's charts (its export has no place for it): the variant, the window
    and the sample the report was computed on."""
    window = summary["window"]
    facts = [
        ("Variant", group["arm"] + (f", variant {group['variant']}" if group["variant"] else "")),
        ("Window", f"predictions logged from {window['first']} to {window['last']}"
                   + (f" (since {window['since']})" if window["since"] else "")),
        ("Sample", f"{sample['rows']:,} of the {sample['of']:,} predictions with an outcome, drawn uniformly with "
                   f"seed {sample['seed']} (--report-rows {summary['report_rows']:,}, --seed)"),
        ("All rows", f"the metrics in quality_{summary['task']}.json use all {sample['of']:,}"),
    ]
    rows = "".join(f'<dt style="font-weight:600">{escape(k)}</dt><dd style="margin:0">{escape(v)}</dd>' for k, v in facts)
    return (f'<header id="{HEADER_ID}" style="font-family:Roboto,Helvetica,Arial,sans-serif;font-size:14px;'
            'padding:16px 24px;border-bottom:1px solid #ddd;background:#fafafa">'
            f'<h1 style="font-size:22px;margin:0 0 6px">Quality of {escape(group["arm"])}</h1>'
            f'<dl style="display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0">{rows}</dl>'
            "</header>")


def _key(group: dict[str, Any]) -> tuple:
    return group["model"], group["version"], group["alias"], group["variant"]


def evidently_reports(samples: list[tuple[dict[str, Any], pd.DataFrame, dict[str, int]]], out_dir: Path,
                      workspace_path: Path, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One ClassificationPreset report per variant with metrics, on its seeded sample (variants.report_samples);
    every variant's run in its model's workspace project carries its label-free estimate and held-out values
    (monitoring/quality/dashboard.py), also before any outcome (an estimate-only run)."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset
    from evidently.ui.workspace import Workspace

    from monitoring.quality.dashboard import describe, run_metrics, save_dashboard

    workspace = Workspace.create(str(workspace_path))  # opens an existing workspace too
    definition = DataDefinition(
        classification=[BinaryClassification(target="target", prediction_probas="prediction")],
        numerical_columns=["prediction"],
    )
    # Run metadata: flat strings only. Evidently 0.7's workspace matches panels to runs with
    # `run.metadata.items() >= filter.metadata.items()`, which raises on a nested dict: every chart of the project
    # then fails to load (its data_series_batch answers 500).
    by_key = {(e["model_name"], e["model_version"], e["alias"], e["variant"]): e
              for e in summary.get("estimate", {}).get("groups", [])}
    sampled = {_key(group): (frame, sample) for group, frame, sample in samples}
    written = []
    lines: dict[str, tuple[Any, list[str]]] = {}
    for group in summary["groups"]:
        if group["below_min_rows"]:  # a leftover: no table row, no verdict, no gauge, no run
            continue
        estimate = by_key.get(_key(group))
        extra = run_metrics(estimate, group["held_out"], group["metrics"])
        project = _project(workspace, f"{group['model']} quality")
        lines.setdefault(group["model"], (project, []))[1].append(describe(group, estimate))
        if _key(group) not in sampled:
            if extra:  # no outcome yet (or of one class only): the estimate alone
                snapshot = Report(extra, include_tests=False).run(
                    current_data=Dataset.from_pandas(pd.DataFrame({"prediction": [0.0]})), reference_data=None)
                workspace.add_run(project.id, snapshot, include_data=False,
                                  name=f"{group['arm']} (estimate, {group['predictions']} predictions)")
            continue
        frame, sample = sampled[_key(group)]
        snapshot = Report([ClassificationPreset(probas_threshold=group["threshold"]), *extra], include_tests=False).run(
            current_data=Dataset.from_pandas(frame, data_definition=definition), reference_data=None,
            metadata={**{f"sample_{key}": str(value) for key, value in sample.items()}, "variant": group["arm"]})
        stem = f"quality_{group['model']}_{group['version']}" + (f"_{group['alias']}" if group["alias"] else "")
        page = snapshot.get_html_str(as_iframe=False)
        page = page.replace("<body>", f"<body>\n{_header(group, sample, summary)}", 1)
        (out_dir / f"{stem}.html").write_text(page, encoding="utf-8")
        snapshot.save_json(str(out_dir / f"{stem}.json"))
        workspace.add_run(project.id, snapshot, include_data=False,
                          name=f"{group['arm']} ({sample['rows']} of {sample['of']} outcomes, seed {sample['seed']})")
        written.append({"arm": group["arm"], "html": str(out_dir / f"{stem}.html"),
                        "json": str(out_dir / f"{stem}.json"), "project": str(project.id), "sample": sample})
    for project, described in lines.values():
        save_dashboard(workspace, project.id, described)
    return written
