"""Compare the primary model with its shadow on the same records, from the prediction log.

    python -m monitoring.shadow --task purchase                      # artifacts/shadow/purchase.{json,html}
    python -m monitoring.shadow --task purchase --log logs/ --top 50

A shadow line (`shadow: true`) carries the primary's request id (and its `prediction_id` once predictions have
ids); within one request the primary and the shadow log their records in the same order, so records pair up by
(request id, position). For each (primary, shadow) pair of model versions the report gives the agreement rate of
the predicted class, the distribution of probability differences (shadow minus primary) and the records where
they disagree most, with their inputs. Exit status 2 when the log holds no shadow line for the task.
"""

from __future__ import annotations

import argparse
import html
import sys
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from monitoring.logbatch import META_COLUMNS, OUTPUT_COLUMNS
from monitoring.predictlog import read_log
from settings import get_settings

ENDPOINTS = ("/predict", "/batch_predict")
BINS = np.round(np.linspace(-1.0, 1.0, 21), 2)


@dataclass
class Comparison:
    primary: str  # name:version
    shadow: str
    records: int
    agreement_rate: float
    difference: dict[str, float]  # mean, mean_abs and quantiles of shadow - primary probability
    histogram: dict[str, list]  # bin edges and counts of the differences
    most_disagreeing: list[dict] = field(default_factory=list)


@dataclass
class ShadowReport:
    task: str
    log: str
    primary_records: int
    unmatched_primary: int  # primary records without a shadow line (skipped when the queue was full, or no shadow)
    comparisons: list[Comparison]


@cache
def task_of(model_name: str) -> str | None:
    import bentoml

    try:
        return bentoml.models.get(f"{model_name}:latest").info.metadata.get("task")
    except Exception:  # noqa: BLE001 - a model gone from the store: fall back on the alias
        return None


def _of_task(log: pd.DataFrame, task: str) -> pd.Series:
    by_alias = log["alias"].fillna("").str.startswith(f"{task}@") if "alias" in log else False
    by_store = log["model_name"].map(lambda name: task_of(name) == task)
    return by_alias | by_store


def pair_up(log: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(primary, shadow) lines, each with the key that pairs a shadow record with its primary record."""
    log = log[log["endpoint"].isin(ENDPOINTS)].copy()
    log["shadow"] = log["shadow"].fillna(False).astype(bool) if "shadow" in log else False
    # Prediction ids (when the log has them) name a record exactly; else the request id and the position in it.
    key = "prediction_id" if "prediction_id" in log and log["prediction_id"].notna().all() else "request_id"
    log["_pos"] = log.groupby([key, "model_name", "shadow"], sort=False).cumcount()
    log["_key"] = log[key].astype(str) + "#" + log["_pos"].astype(str)
    return log[~log["shadow"]], log[log["shadow"]]


def compare(primary: pd.DataFrame, shadow: pd.DataFrame, inputs: list[str], top: int) -> list[Comparison]:
    comparisons = []
    primary = primary.assign(_tag=primary["model_name"] + ":" + primary["model_version"].astype(str))
    shadow = shadow.assign(_tag=shadow["model_name"] + ":" + shadow["model_version"].astype(str))
    for shadow_tag, lines in shadow.groupby("_tag"):
        joined = primary.merge(lines[["_key", "probability", "prediction"]], on="_key", suffixes=("", "_shadow"))
        for primary_tag, pair in joined.groupby("_tag"):
            difference = (pair["probability_shadow"] - pair["probability"]).to_numpy(dtype=np.float64)
            counts, _ = np.histogram(np.clip(difference, -1, 1), bins=BINS)
            quantiles = np.quantile(np.abs(difference), [0.5, 0.9, 0.99, 1.0])
            order = np.argsort(-np.abs(difference), kind="stable")[:top]
            worst = pair.iloc[order].assign(difference=difference[order])
            columns = ["request_id", "probability", "probability_shadow", "prediction", "prediction_shadow",
                       "difference", *inputs]
            comparisons.append(Comparison(
                primary=str(primary_tag),
                shadow=str(shadow_tag),
                records=len(pair),
                agreement_rate=round(float((pair["prediction"] == pair["prediction_shadow"]).mean()), 6),
                difference={
                    "mean": round(float(difference.mean()), 6),
                    "mean_abs": round(float(np.abs(difference).mean()), 6),
                    "p50_abs": round(float(quantiles[0]), 6),
                    "p90_abs": round(float(quantiles[1]), 6),
                    "p99_abs": round(float(quantiles[2]), 6),
                    "max_abs": round(float(quantiles[3]), 6),
                },
                histogram={"edges": BINS.tolist(), "counts": counts.tolist()},
                most_disagreeing=orjson.loads(worst[[c for c in columns if c in worst]].to_json(orient="records")),
            ))
    return comparisons


def build_report(log_path: Path | str, task: str, top: int = 20) -> ShadowReport:
    log = read_log(log_path)
    if log.empty or "model_name" not in log:
        return ShadowReport(task, str(log_path), 0, 0, [])
    log = log[_of_task(log, task)]
    primary, shadow = pair_up(log)
    reserved = {*META_COLUMNS, *OUTPUT_COLUMNS, "prediction_id", "_pos", "_key"}
    inputs = [c for c in log.columns if c not in reserved]
    comparisons = compare(primary, shadow, inputs, top)
    unmatched = int((~primary["_key"].isin(shadow["_key"])).sum())
    return ShadowReport(task, str(log_path), len(primary), unmatched, comparisons)


def to_html(report: ShadowReport) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Shadow comparison: {html.escape(report.task)}"
             "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>",
             f"<h1>Shadow comparison: task {html.escape(report.task)}</h1>",
             f"<p>{report.primary_records} primary records; {report.unmatched_primary} without a shadow line.</p>"]
    for c in report.comparisons:
        parts.append(f"<h2>{html.escape(c.primary)} (primary) vs {html.escape(c.shadow)} (shadow)</h2>")
        parts.append(f"<p>{c.records} records; predicted class agrees on <b>{c.agreement_rate:.2%}</b>.</p>")
        parts.append(pd.DataFrame([c.difference]).to_html(index=False))
        edges = c.histogram["edges"]
        bins = [f"[{a:+.1f}, {b:+.1f})" for a, b in zip(edges, edges[1:])]
        parts.append("<h3>Shadow minus primary probability</h3>")
        parts.append(pd.DataFrame({"bin": bins, "records": c.histogram["counts"]}).to_html(index=False))
        parts.append("<h3>Records where they disagree most</h3>")
        parts.append(pd.DataFrame(c.most_disagreeing).to_html(index=False))
    if not report.comparisons:
        parts.append("<p>No shadow predictions in the log for this task.</p>")
    return "\n".join(parts) + "</body></html>\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="the task whose primary and shadow models to compare")
    parser.add_argument("--log", default=str(get_settings().prediction_log_path), help="the prediction log")
    parser.add_argument("--out", default="artifacts/shadow", help="folder of the HTML and JSON reports")
    parser.add_argument("--top", type=int, default=20, help="how many most-disagreeing records to list")
    args = parser.parse_args(argv)
    report = build_report(args.log, args.task, args.top)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.task}.json").write_bytes(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2))
    (out / f"{args.task}.html").write_text(to_html(report))
    for c in report.comparisons:
        print(f"{c.primary} vs {c.shadow}: {c.records} records, agreement {c.agreement_rate:.2%}, "
              f"mean |difference| {c.difference['mean_abs']:.4f}, max {c.difference['max_abs']:.4f}")
    print(f"wrote {out / (args.task + '.html')} and {out / (args.task + '.json')}")
    if not report.comparisons:
        print(f"no shadow predictions for task {args.task!r} in {args.log}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
