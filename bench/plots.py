"""The plots of bench/results/: /predict against its peers, the one-request batch doors, and contention."""

from __future__ import annotations

from pathlib import Path


def _bars(axis, labels: list[str], values: list[float], title: str, ylabel: str) -> None:
    bars = axis.bar(range(len(values)), values, color=[f"C{i}" for i in range(len(values))])
    axis.set_xticks(range(len(values)), labels, rotation=25, ha="right", fontsize=8)
    axis.set(title=title, ylabel=ylabel)
    axis.bar_label(bars, fmt="%.0f", fontsize=7)
    axis.grid(alpha=0.3, axis="y")


def plots(results: dict, out: Path, labels: dict[str, str]) -> list[str]:
    """The PNGs written under `out`; `labels` name the servers (bench/report.py's LABELS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if "predict" in results:
        rows = results["predict"]["rows"]
        names = [labels.get(r["server"], r["server"]).replace(" (constant answer)", "") for r in rows]
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
        _bars(left, names, [r["throughput"] for r in rows], f"/predict, concurrency {results['predict']['concurrency']}",
              "requests / s")
        xs = range(len(rows))
        right.bar([x - 0.2 for x in xs], [r["p50_ms"] for r in rows], width=0.4, label="p50")
        right.bar([x + 0.2 for x in xs], [r["p99_ms"] for r in rows], width=0.4, label="p99")
        right.set_xticks(list(xs), names, rotation=25, ha="right", fontsize=8)
        right.set(title="latency", ylabel="ms")
        right.grid(alpha=0.3, axis="y")
        right.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "predict.png", dpi=110)
        plt.close(fig)
        written.append("predict.png")

    if "batch" in results:
        med = results["batch"]["median_ms"]
        fig, axis = plt.subplots(figsize=(8, 4.6))
        _bars(axis, [labels.get(k, k) for k in med], list(med.values()),
              f"{results['batch']['records']:,} rows in one request (median)", "ms")
        fig.tight_layout()
        fig.savefig(out / "batch.png", dpi=110)
        plt.close(fig)
        written.append("batch.png")

    panels = [k for k in ("mixed", "workers") if "rows" in results.get(k, {})]
    if panels:
        fig, axes = plt.subplots(1, 2 * len(panels), figsize=(5.5 * len(panels), 4.2))
        for i, key in enumerate(panels):
            rows = results[key]["rows"]
            names = [r["server"].replace("_", " ") for r in rows]
            _bars(axes[2 * i], names, [r["throughput"] for r in rows], f"{key}: /predict throughput", "requests / s")
            _bars(axes[2 * i + 1], names, [r["p99_ms"] for r in rows], f"{key}: /predict p99", "ms")
        fig.tight_layout()
        fig.savefig(out / "contention.png", dpi=110)
        plt.close(fig)
        written.append("contention.png")
    return written
