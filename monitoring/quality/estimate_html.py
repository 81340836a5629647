"""The estimate's HTML report (`quality_<task>_estimate.html`): what was estimated and how, a table per variant
(estimate with its 95% interval beside the realized metric and the error), and per variant the four metrics over
the window's chunks: the estimate, its 95% band, the realized metric where outcomes arrived and the held-out
value. Plotly (Evidently's own charting library) draws them; the page carries plotly.js, so it opens offline."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from monitoring.quality.cbpe import METRICS
from monitoring.quality.estimate import Z95

TITLES = {"roc_auc": "ROC AUC", "precision": "Precision", "recall": "Recall", "accuracy": "Accuracy"}
STYLE = ("body{font-family:Roboto,Helvetica,Arial,sans-serif;font-size:14px;margin:24px;color:#222}"
         "table{border-collapse:collapse;margin:8px 0 16px}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
         "text-align:right}th:first-child,td:first-child{text-align:left}dl{display:grid;"
         "grid-template-columns:max-content 1fr;gap:4px 16px}dt{font-weight:600}.note{color:#8a5a00}")


def _number(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _interval(estimate: dict[str, Any]) -> str:
    if estimate["value"] is None:
        return "-"
    ci = estimate["ci95"]
    return f"{estimate['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def group_table(group: dict[str, Any]) -> str:
    compared = group["on_rows_with_outcome"] or {}
    rows = []
    for m in METRICS:
        c = compared.get(m) or {}
        trust = group["trust"][m]
        share = "-" if trust["within_ci95_share"] is None else f"{trust['within_ci95_share']:.0%}"
        rows.append(
            f"<tr><td>{TITLES[m]}</td><td>{_interval(group['estimate'][m])}</td>"
            f"<td>{_number(c.get('estimate'))}</td><td>{_number(c.get('realized'))}</td>"
            f"<td>{_number(c.get('error'), sign=True)}</td>"
            f"<td>{_number(trust['mean_abs_error'])} over {trust['chunks']}</td>"
            f"<td>{share}</td></tr>")
    return ("<table><tr><th>metric</th><th>estimate, all rows [95% interval]</th><th>estimate, rows with an "
            "outcome</th><th>realized</th><th>error</th><th>mean |error| over chunks</th><th>chunks within "
            "95% interval</th></tr>" + "".join(rows) + "</table>")


def group_figure(group: dict[str, Any], held_out: dict[str, Any] | None):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(METRICS), subplot_titles=[TITLES[m] for m in METRICS])
    starts = [c["chunk"] for c in group["chunks"]]
    for col, m in enumerate(METRICS, 1):
        estimates = [c["estimate"][m] for c in group["chunks"]]
        low = [e["ci95"][0] if e["ci95"] else None for e in estimates]
        high = [e["ci95"][1] if e["ci95"] else None for e in estimates]
        first = col == 1
        figure.add_trace(go.Scatter(x=starts, y=high, mode="lines", line={"width": 0}, showlegend=False,
                                    hoverinfo="skip"), row=1, col=col)
        figure.add_trace(go.Scatter(x=starts, y=low, mode="lines", line={"width": 0}, fill="tonexty",
                                    fillcolor="rgba(31,119,180,0.2)", name="95% interval", legendgroup="band",
                                    showlegend=first), row=1, col=col)
        figure.add_trace(go.Scatter(x=starts, y=[e["value"] for e in estimates], mode="lines+markers",
                                    line={"color": "#1f77b4"}, name="estimate", legendgroup="estimate",
                                    showlegend=first), row=1, col=col)
        realized = [(c["chunk"], c["on_rows_with_outcome"][m]["realized"]) for c in group["chunks"]
                    if c["on_rows_with_outcome"] and c["on_rows_with_outcome"][m]["realized"] is not None]
        if realized:
            figure.add_trace(go.Scatter(x=[r[0] for r in realized], y=[r[1] for r in realized], mode="markers",
                                        marker={"color": "#d62728", "symbol": "x", "size": 9}, name="realized",
                                        legendgroup="realized", showlegend=first), row=1, col=col)
        if held_out and held_out.get(m) is not None:
            figure.add_hline(y=held_out[m], line={"dash": "dash", "color": "#555"}, row=1, col=col,
                             annotation_text=f"held-out {held_out[m]:.3f}", annotation_position="bottom left")
        figure.update_yaxes(tickformat=".3f", row=1, col=col)  # never round an AUC of 0.86 to "1"
    figure.update_layout(height=360, margin={"l": 40, "r": 20, "t": 40, "b": 40},
                         legend={"orientation": "h", "yanchor": "bottom", "y": 1.12, "x": 0})  # above: dates below
    return figure


def write_estimate_html(summary: dict[str, Any], path: Path) -> Path:
    block = summary["estimate"]
    held = {(g["model"], g["version"], g["alias"], g["variant"]): g["held_out"] for g in summary["groups"]}
    facts = [
        ("Task", summary["task"]),
        ("Window", f"{summary['window']['first']} to {summary['window']['last']}"
                   + (f" (since {summary['window']['since']})" if summary["window"]["since"] else "")),
        ("Chunks", block["chunk"]),
        ("Method", block["method"] + f"; intervals are ±{Z95:.2f} standard errors"),
        ("Models", "; ".join(f"{tag}: threshold {m['threshold']:g}, calibrator {m['calibrator']}"
                             for tag, m in block["models"].items())),
        ("Rows", f"{summary['predictions']} predictions, {summary['with_outcome']} with an outcome"),
        ("Generated", datetime.now(timezone.utc).isoformat(timespec="seconds")),
    ]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Estimated quality of {escape(summary['task'])}"
             f" models</title><style>{STYLE}</style></head><body>",
             f"<h1>Quality of the {escape(summary['task'])} models, estimated without outcomes</h1>",
             "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts) + "</dl>"]
    if summary.get("note"):
        parts.append(f"<p class='note'>{escape(summary['note'])}</p>")
    include = True
    for group in block["groups"]:
        parts.append(f"<h2>{escape(group['arm'])}</h2><p>{group['rows']} predictions, {group['with_outcome']} with "
                     "an outcome</p>")
        parts.append(group_table(group))
        figure = group_figure(group, held.get((group["model_name"], group["model_version"], group["alias"],
                                                group["variant"])))
        parts.append(figure.to_html(full_html=False, include_plotlyjs=include))
        include = False  # plotly.js once per page
    parts.append("</body></html>")
    path.write_text("".join(parts))
    return path
