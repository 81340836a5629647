"""Contributions drawn as SVG bar charts: inline, no script and no library, so a page shows them offline and a
report carries them in one file.

- `prediction_svg`: one prediction, one horizontal bar per input from a zero line (right raises the output, left
  lowers it), largest first, with the input's value and the contribution written beside the bar;
- `comparison_svg`: the global view, each input's mean absolute contribution on the reference sample and on a
  window, side by side.

Every bar is a `<rect>` carrying `data-input` and `data-value`, so a browser test can read the chart back.
"""

from __future__ import annotations

from html import escape
from typing import Any

RAISES, LOWERS = "#c0392b", "#2e6da4"  # red: pushes the output up; blue: pushes it down
REFERENCE, WINDOW = "#8c8c8c", "#e67e22"
FONT = 'font-family="Helvetica,Arial,sans-serif" font-size="13"'
ROW, LABEL, BAR, TEXT = 26, 300, 360, 90  # row height, label column, bar area, value column (px)


def _number(value: float) -> str:
    return f"{value:+.4f}" if abs(value) >= 1e-4 or value == 0 else f"{value:+.2e}"


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def prediction_svg(contributions: dict[str, float], inputs: dict[str, Any] | None = None) -> str:
    """One prediction's contributions (input -> contribution), in the given order."""
    names = list(contributions)
    scale = max((abs(v) for v in contributions.values()), default=0.0) or 1.0
    half = BAR / 2
    zero = LABEL + half
    width, height = LABEL + BAR + TEXT, ROW * len(names) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="contributions" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="contribution of each input">']
    for row, name in enumerate(names):
        value = contributions[name]
        y = 10 + row * ROW
        length = half * abs(value) / scale
        x = zero if value >= 0 else zero - length
        label = name if inputs is None else f"{name} = {_shown(inputs.get(name))}"
        colour = RAISES if value >= 0 else LOWERS
        parts.append(f'<text x="{LABEL - 8}" y="{y + 15}" text-anchor="end" {FONT}>{escape(label)}</text>')
        parts.append(f'<rect class="bar" data-input="{escape(name)}" data-value="{value!r}" x="{x:.2f}" y="{y + 3}" '
                     f'width="{length:.2f}" height="{ROW - 8}" fill="{colour}"/>')
        anchor, tx = ("start", x + length + 4) if value >= 0 else ("end", x - 4)
        parts.append(f'<text x="{tx:.2f}" y="{y + 15}" text-anchor="{anchor}" {FONT}>{_number(value)}</text>')
    parts.append(f'<line x1="{zero}" y1="4" x2="{zero}" y2="{height - 20}" stroke="#333" stroke-width="1"/>')
    parts.append(f'<text x="{zero}" y="{height - 5}" text-anchor="middle" {FONT} fill="#555">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def comparison_svg(reference: dict[str, float], window: dict[str, float]) -> str:
    """Mean absolute contribution per input, reference against window, inputs in the reference's order."""
    names = list(reference)
    scale = max([*reference.values(), *window.values(), 0.0]) or 1.0
    width, group = LABEL + BAR + TEXT, 2 * (ROW - 6) + 8
    height = group * len(names) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="mean-contributions" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="mean absolute contribution per input">']
    for row, name in enumerate(names):
        y = 8 + row * group
        parts.append(f'<text x="{LABEL - 8}" y="{y + group / 2 + 2}" text-anchor="end" {FONT}>{escape(name)}</text>')
        for offset, (series, values, colour) in enumerate((("reference", reference, REFERENCE),
                                                           ("window", window, WINDOW))):
            value = float(values.get(name, 0.0))
            length = BAR * value / scale
            top = y + offset * (ROW - 6)
            parts.append(f'<rect class="bar {series}" data-input="{escape(name)}" data-series="{series}" '
                         f'data-value="{value!r}" x="{LABEL}" y="{top}" width="{length:.2f}" height="{ROW - 8}" '
                         f'fill="{colour}"/>')
            parts.append(f'<text x="{LABEL + length + 4:.2f}" y="{top + 13}" {FONT}>{value:.4f}</text>')
    legend_y = height - 14
    for offset, (series, colour) in enumerate((("reference sample", REFERENCE), ("window", WINDOW))):
        x = LABEL + offset * 160
        parts.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 18}" y="{legend_y}" {FONT}>{series}</text>')
    parts.append("</svg>")
    return "".join(parts)
