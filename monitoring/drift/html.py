"""The HTML report: Evidently's page, headed by what it is about (model, version, window, rows, thresholds,
verdict), which Evidently 0.7's export has no place for: a small header is written into its `<body>`."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from monitoring.drift.report import verdict
from training.explain.chart import comparison_svg

HEADER_ID = "drift-report-header"
ATTRIBUTION_ID = "drift-report-attribution"


def header_facts(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs a reader needs before the charts, from the run's summary."""
    window = summary["window"]
    by_method: dict[tuple[str, float], list[str]] = {}
    for column, result in summary["features"].items():
        by_method.setdefault((result["method"], result["threshold"]), []).append(column)
    methods = "; ".join(f"{method}, threshold {threshold:g}: {', '.join(columns)}"
                        for (method, threshold), columns in by_method.items())
    left_out = [f"{n} rows of version {v}" for v, n in sorted(summary["other_versions"].items())]
    if summary["lines_skipped"]:
        left_out.append(f"{summary['lines_skipped']} unparseable log line(s)")
    facts = [
        ("Model", f"{summary['model']} (task {summary['task']})"),
        ("Version", summary["model_version"]),
        ("Window", f"{window['description']}: rows logged from {window['first_ts']} to {window['last_ts']}"),
        ("Rows", f"{summary['rows']} logged rows (current) against {summary['reference_rows']} reference rows "
                 "saved with the model"),
        ("Column drift", methods),
        ("Dataset drift", f"when the share of drifted columns reaches {summary['drift_share_threshold']:g}"),
        ("Left out", "; ".join(left_out) or "nothing"),
        *([("Windows", window_lines(summary["windows"]))] if len(summary.get("windows", [])) > 1 else []),
        ("Log", summary["log"]),
        ("Generated", summary["generated_at"]),
    ]
    return facts


def window_lines(windows: list[dict[str, Any]]) -> str:
    """Each window the verdict looked at (monitoring/drift/recent.py), its rows and its level or why it was skipped;
    the charts below are the first one's."""
    return "; ".join(
        f"{w['description']}: {w['rows']:,} rows, "
        + (w["verdict"]["level"].upper() if w["verdict"] else f"skipped ({w['skipped']})") for w in windows
    ) + " (the charts show the first)"


def render_header(summary: dict[str, Any]) -> str:
    rows = "".join(
        f'<dt style="font-weight:600">{escape(label)}</dt><dd style="margin:0">{escape(str(text))}</dd>'
        for label, text in header_facts(summary)
    )
    colour = "#b70000" if summary["dataset_drift"] else "#098249"
    return (
        f'<header id="{HEADER_ID}" style="font-family:Roboto,Helvetica,Arial,sans-serif;font-size:14px;'
        'padding:16px 24px;border-bottom:1px solid #ddd;background:#fafafa">'
        f'<h1 style="font-size:22px;margin:0 0 6px">Data drift of {escape(summary["model"])}:'
        f'{escape(summary["model_version"])}</h1>'
        f'<p style="margin:0 0 10px;font-weight:600;color:{colour}">{escape(verdict(summary))}</p>'
        f'<dl style="display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0">{rows}</dl>'
        "</header>"
    )


def render_attribution(attribution: dict[str, Any] | None) -> str:
    """The global view (monitoring/drift/attribution.py) as a section: reference and window bars per input."""
    if not attribution:
        return ""
    features = attribution["features"]
    chart = comparison_svg({c: f["reference"] for c, f in features.items()}, {c: f["window"] for c, f in features.items()})
    rows = attribution["rows"]
    return (
        f'<section id="{ATTRIBUTION_ID}" style="font-family:Roboto,Helvetica,Arial,sans-serif;font-size:14px;'
        'padding:16px 24px;border-bottom:1px solid #ddd">'
        '<h2 style="font-size:18px;margin:0 0 6px">What the model relies on: mean absolute contribution per input</h2>'
        f'<p style="margin:0 0 8px;color:#555">To the predicted {escape(attribution["output"])}, on '
        f'{rows["reference"]} reference rows and {rows["window"]} window rows. Method: {escape(attribution["method"])}.</p>'
        f"{chart}</section>"
    )


def save_html(snapshot, path: Path, summary: dict[str, Any]) -> None:
    """Write the snapshot's page with the header at the top and a title naming the model and window."""
    page = snapshot.get_html_str(as_iframe=False)
    title = f"Data drift of {summary['model']}:{summary['model_version']}, {summary['window']['description']}"
    page = page.replace("<head>", f"<head>\n<title>{escape(title)}</title>", 1)
    page = page.replace("<body>", f"<body>\n{render_header(summary)}{render_attribution(summary.get('attribution'))}", 1)
    Path(path).write_text(page, encoding="utf-8")
