"""The HTML answer of the explanation doors (`?format=html`, serving/web/explain.py): a page per answer with one contribution bar chart per
record (training/explain/chart.py), readable offline (no script, no external file)."""

from __future__ import annotations

from html import escape
from typing import Any

from training.explain.chart import prediction_svg

STYLE = ("body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222}h1{font-size:20px;margin:0 0 4px}"
         "h2{font-size:16px;margin:24px 0 4px}p{margin:2px 0 8px}.facts{color:#555;font-size:13px}"
         "figure{margin:8px 0 16px}")
MAX_CHARTS = 50  # a 1,000-record answer as a page: the first charts, and the JSON for the rest


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def _summary(item: dict[str, Any], output: str) -> str:
    total = sum(item["contributions"].values())
    return (f'<p class="summary">{output}: base value <b>{item["base_value"]:.4f}</b> '
            f'{"+" if total >= 0 else "−"} contributions {abs(total):.4f} = <b class="value">{item["value"]:.4f}</b></p>')


def _method(answer: dict[str, Any]) -> str:
    return (f'<p class="facts">Red bars raise the {answer["output"].replace("_", "-")}, blue bars lower it. '
            f'Method: {escape(answer["method"])}.</p>')


def prediction_page(answer: dict[str, Any]) -> str:
    """GET /v1/predictions/{id}/explanation?format=html."""
    tag = f'{answer["model_name"]}:{answer["model_version"]}'
    served = "served now" if answer["served_now"] else "no longer served: loaded from the model store"
    facts = (f'Prediction {escape(answer["prediction_id"])} made {escape(str(answer["ts"]))} on '
             f'{escape(str(answer["endpoint"]))} by {escape(tag)} ({served}); answered probability '
             f'{answer["probability"]}.')
    body = (f"<h1>Why {escape(tag)} answered {answer['value']:.4f}</h1><p class=\"facts\">{facts}</p>"
            f"{_summary(answer, answer['output'])}<figure>{prediction_svg(answer['contributions'], answer['inputs'])}"
            f"</figure>{_method(answer)}")
    return _page(f"Explanation of prediction {answer['prediction_id']}", body)


def records_page(answer: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """POST /v1/explain?format=html: one chart per record (the first MAX_CHARTS)."""
    tag = f'{answer["model_name"]}:{answer["model_version"]}'
    parts = [f"<h1>Explanations by {escape(tag)}</h1>", _method(answer)]
    shown = answer["explanations"][:MAX_CHARTS]
    for index, item in enumerate(shown):
        parts.append(f"<h2>Record {index}</h2>{_summary(item, answer['output'])}"
                     f"<figure>{prediction_svg(item['contributions'], records[index])}</figure>")
    if len(answer["explanations"]) > len(shown):
        parts.append(f'<p class="facts">{len(answer["explanations"]) - len(shown)} more records: ask for JSON to see '
                     "them all.</p>")
    return _page(f"Explanations by {tag}", "".join(parts))
