"""The quality projects' dashboard in the Evidently workspace (`make dashboard`, project `<model> quality`): realized
quality beside the label-free estimate, its 95% interval and the held-out value, per run.

Evidently 0.7.23's UI, as the drift dashboard found (monitoring/drift/workspace.py): a chart whose values are all
equal labels its y-axis with one rounded tick ("1" for a ROC AUC of 0.87, "0" for a log loss of 0.42), and a run is
one point, so after one run every chart showed a lone marker on such an axis. Here every chart also plots the
held-out value and the estimate's interval (constants stored with each run, as QualityValue metrics, since panels
have no reference lines): the values differ, so the axis reads 0.870, 0.875...; and a text panel states the last
run's numbers, readable from the first run on. Log loss shares its chart with the Brier score, held-out values
beside each, for the same reason. The dashboard is written again at every run, so it always matches
this code.

Imports Evidently (seconds): imported only when the job writes its reports.
"""

from __future__ import annotations

from typing import Any

from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric

TAB = "Quality"
# chart title, Evidently's metric for the realized value, our metric name for the estimate and the held-out value
ESTIMATED_CHARTS = (
    ("ROC AUC", "RocAuc", "roc_auc"),
    ("Precision at the threshold", "Precision", "precision"),
    ("Recall at the threshold", "Recall", "recall"),
    ("Accuracy at the threshold", "Accuracy", "accuracy"),
)
LOSS_CHART = "Log loss and Brier score (lower is better)"
LAST_RUN_TITLE = "Quality (last run)"


class QualityValue(SingleValueMetric):
    """A number the job computed, stored with the run so a panel can draw it: `kind` is estimate, estimate_low,
    estimate_high (the 95% interval), held_out or realized (for what Evidently does not compute: the Brier score);
    `quality` the metric (roc_auc, precision, ...)."""

    kind: str
    quality: str
    number: float

    def _default_tests(self, context):
        return []

    def _default_tests_with_reference(self, context):
        return []


class QualityValueCalculation(SingleValueCalculation[QualityValue]):
    def calculate(self, context, current_data, reference_data):
        return self.result(self.metric.number)

    def display_name(self) -> str:
        return f"{self.metric.quality} ({self.metric.kind.replace('_', ' ')})"


def run_metrics(estimate: dict[str, Any] | None, held_out: dict[str, Any] | None,
                realized: dict[str, Any] | None) -> list[QualityValue]:
    """The QualityValue metrics of one group's run: its estimate over the window (value and 95% interval), the
    held-out metrics stored with the model, and the realized Brier score."""
    metrics = []
    for name, entry in ((estimate or {}).get("estimate") or {}).items():
        if entry["value"] is None:
            continue
        metrics.append(QualityValue(kind="estimate", quality=name, number=entry["value"]))
        if entry["ci95"]:
            metrics.append(QualityValue(kind="estimate_low", quality=name, number=entry["ci95"][0]))
            metrics.append(QualityValue(kind="estimate_high", quality=name, number=entry["ci95"][1]))
    for name in (*(chart[2] for chart in ESTIMATED_CHARTS), "log_loss", "brier"):
        if held_out and isinstance(held_out.get(name), (int, float)):
            metrics.append(QualityValue(kind="held_out", quality=name, number=float(held_out[name])))
    if realized and isinstance(realized.get("brier"), (int, float)):
        metrics.append(QualityValue(kind="realized", quality="brier", number=float(realized["brier"])))
    return metrics


def last_run_text(lines: list[str]) -> tuple[str, str]:
    return LAST_RUN_TITLE, " | ".join(lines) or "no run yet"


def describe(group: dict[str, Any], estimate: dict[str, Any] | None) -> str:
    """One group's last run in a sentence: realized, estimated (95% interval) and held-out ROC AUC."""
    parts = [f"{group['arm']}: {group['predictions']} predictions, {group['with_outcome']} with an outcome"]
    realized = (group.get("metrics") or {}).get("roc_auc")
    if realized is not None:
        parts.append(f"ROC AUC {realized:.3f}")
    auc = ((estimate or {}).get("estimate") or {}).get("roc_auc")
    if auc and auc["value"] is not None and auc["ci95"]:
        parts.append(f"estimated {auc['value']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]")
    held = (group.get("held_out") or {}).get("roc_auc")
    if held is not None:
        parts.append(f"held-out {held:.3f}")
    return ", ".join(parts)


def panels(lines: list[str]) -> list:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel, text_panel

    def value(kind: str, quality: str, legend: str) -> PanelMetric:
        return PanelMetric(legend=legend, metric="QualityValue", metric_labels={"kind": kind, "quality": quality})

    title, description = last_run_text(lines)
    out = [text_panel(title=title, description=description, size="full")]
    for title, metric, name in ESTIMATED_CHARTS:
        out.append(line_plot_panel(title=title, size="half", values=[
            PanelMetric(legend="realized", metric=metric), value("estimate", name, "estimate"),
            value("estimate_low", name, "estimate - 95%"), value("estimate_high", name, "estimate + 95%"),
            value("held_out", name, "held-out")]))
    out.append(line_plot_panel(title=LOSS_CHART, size="full", values=[  # two metrics: never one lone value
        PanelMetric(legend="log loss", metric="LogLoss"), value("realized", "brier", "Brier score"),
        value("held_out", "log_loss", "held-out log loss"), value("held_out", "brier", "held-out Brier score")]))
    return out


def save_dashboard(workspace, project_id, lines: list[str]) -> None:
    from evidently.sdk.models import DashboardModel, DashboardTabModel

    made = panels(lines)
    workspace.save_dashboard(project_id, DashboardModel(
        tabs=[DashboardTabModel(title=TAB, panels=[p.id for p in made])], panels=made))
