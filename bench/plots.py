"""The plots of bench/results/: /predict against its peers, the one-request batch doors, and contention, each with
the bench's own client and the external tool side by side."""

from __future__ import annotations

from pathlib import Path

from bench.targets import LABELS, TOOL_NAMES

TOOLS = ("bench", "external")


def _grouped(axis, groups: list[str], values: dict[str, list[float | None]], names: dict[str, str], title: str,
             ylabel: str) -> None:
    """Bars per group, one per tool, labelled with their values."""
    width = 0.8 / len(values)
    for i, (tool, series) in enumerate(values.items()):
        xs = [x + (i - (len(values) - 1) / 2) * width for x in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in series]
        bars = axis.bar(xs, heights, width=width, label=names[tool], color=f"C{i}")
        axis.bar_label(bars, labels=[f"{v:.0f}" if v is not None else "" for v in series], fontsize=7)
    axis.set_xticks(range(len(groups)), groups, rotation=25, ha="right", fontsize=8)
    axis.set(title=title, ylabel=ylabel)
    axis.grid(alpha=0.3, axis="y")
    tallest = max((v for series in values.values() for v in series if v is not None), default=0)
    axis.set_ylim(0, tallest * 1.3 or 1)  # room above the bars for the legend
    axis.legend(fontsize=7, loc="upper center", ncol=len(values))


def _by_tool(rows: list[dict], servers: list[str], key: str) -> dict[str, list[float | None]]:
    index = {(r["server"], r["tool"]): r for r in rows}
    return {tool: [index[(s, tool)][key] if (s, tool) in index else None for s in servers] for tool in TOOLS}


def _servers(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["server"] for r in rows))


def plots(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    meta = results.get("meta", {})
    loads = meta.get("load_average_start_end") or [[float("nan")], [float("nan")]]
    stamp = (f"`{meta.get('command', '')}`, {meta.get('date', '')}; load average (1 min) {loads[0][0]:.2f} at the "
             f"start, {loads[1][0]:.2f} at the end, {meta.get('cpus', '?')} CPUs")

    def save(fig, name: str) -> None:
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        fig.text(0.01, 0.01, stamp, fontsize=7, color="0.3")  # a plot read alone still says how it was taken
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    load_names, call_names = TOOL_NAMES["load"], TOOL_NAMES["call"]
    if "predict" in results:
        rows = results["predict"]["rows"]
        servers = _servers(rows)
        labels = [LABELS.get(s, s).replace(" (constant answer)", "") for s in servers]
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
        c = results["predict"]["concurrency"]
        _grouped(left, labels, _by_tool(rows, servers, "throughput"), load_names, f"/predict, concurrency {c}",
                 "requests / s")
        _grouped(right, labels, _by_tool(rows, servers, "p99_ms"), load_names, "p99 latency", "ms")
        save(fig, "predict.png")

    if "batch" in results:
        med = results["batch"]["median_ms"]
        names = list(med)
        fig, axis = plt.subplots(figsize=(10, 4.8))
        _grouped(axis, [LABELS.get(n, n) for n in names], {t: [med[n].get(t) for n in names] for t in TOOLS},
                 call_names, f"{results['batch']['records']:,} rows in one request (median)", "ms")
        save(fig, "batch.png")

    panels = [k for k in ("mixed", "workers") if "rows" in results.get(k, {})]
    if panels:
        fig, axes = plt.subplots(1, 2 * len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
        for i, key in enumerate(panels):
            rows = results[key]["rows"]
            servers = _servers(rows)
            labels = [LABELS.get(s, s) for s in servers]
            _grouped(axes[0][2 * i], labels, _by_tool(rows, servers, "throughput"), load_names,
                     f"{key}: /predict throughput", "requests / s")
            _grouped(axes[0][2 * i + 1], labels, _by_tool(rows, servers, "p99_ms"), load_names, f"{key}: /predict p99",
                     "ms")
        save(fig, "contention.png")
    return written
