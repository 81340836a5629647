"""Replay: score a candidate offline on a logged window of production traffic, before it sees any.

    python -m monitoring.replay --task purchase                              # candidate vs production, last 20,000 rows
    python -m monitoring.replay --task purchase --candidate purchase_lr:abc --since 24h --out artifacts/replay

The window is the control's own primary predictions (shadow lines left out), read through the one log reader
(monitoring/logreader.py) with their inputs; the candidate scores the same rows. The report says:
- agreement: the share of rows whose predicted class is the same;
- shift: the candidate's probability minus control's (mean, mean absolute), and the PSI of the two distributions;
- by segment: the same per value of each categorical input (the 10 biggest) and per quartile of each important
  numeric input (the model's feature_importance), biggest shift first;
- quality: on the window's rows that already have an outcome (the outcome store), both models' held-out metric set
  on the same rows, and the A/B verdict (monitoring/abtest.py) of candidate against control.
JSON and HTML in `--out` (default STATE_DIR/replay); exit 2 with one line when it cannot run. A rollout's replay
step calls `replay()` and gates on its result (training/rollout/controller.py).
"""

from __future__ import annotations

import argparse
import html
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from monitoring.abtest import compare
from monitoring.logreader import LogMissing, read_window
from training.evaluate import evaluate
from training.store import load_model, resolve_ref

TOP_VALUES = 10
PSI_EDGES = np.linspace(0.0, 1.0, 21)


class ReplayError(RuntimeError):
    """The replay cannot run; the message is the one line the user sees."""


@dataclass
class ReplayReport:
    candidate: str
    control: str
    rows: int  # replayed rows (the window's, sampled to --last at most)
    window: str
    error: str | None = None  # the candidate raised on the window: why
    agreement: float | None = None
    shift: dict = field(default_factory=dict)
    segments: list[dict] = field(default_factory=list)
    quality: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def psi_of(control: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """Population stability index of the candidate's probabilities against control's (20 equal bins, half-count
    floor per bin), and what sampling noise alone reaches at 99%: the measure the rollout's drift gate uses on the
    servers' histograms."""
    from training.rollout.evidence import psi, psi_noise

    expected = np.histogram(np.clip(control, 0, 1), bins=PSI_EDGES)[0].tolist()
    actual = np.histogram(np.clip(candidate, 0, 1), bins=PSI_EDGES)[0].tolist()
    bins = sum(1 for a, b in zip(expected, actual) if a + b)
    return float(psi(expected, actual) or 0.0), psi_noise(len(control), len(candidate), bins)


def segments(frame: pd.DataFrame, schema: dict, important: list[str]) -> list[dict]:
    """Shift and agreement per value of each categorical input and per quartile of each important numeric one."""
    groups: list[tuple[str, str, pd.Series]] = []
    for column in schema.get("categorical", []):
        for value in frame[column].value_counts().index[:TOP_VALUES]:
            groups.append((column, str(value), frame[column] == value))
    numeric = [c for c in important if c in frame.columns and c not in schema.get("categorical", [])]
    for column in numeric:
        bins = pd.qcut(frame[column], 4, duplicates="drop")
        for interval in bins.cat.categories:
            groups.append((column, str(interval), bins == interval))
    out = []
    for column, value, mask in groups:
        part = frame[mask]
        out.append({"column": column, "value": value, "rows": int(len(part)),
                    "control_mean": round(float(part["probability"].mean()), 5),
                    "candidate_mean": round(float(part["candidate_probability"].mean()), 5),
                    "shift": round(float((part["candidate_probability"] - part["probability"]).mean()), 5),
                    "agreement": round(float((part["prediction"] == part["candidate_prediction"]).mean()), 5)})
    return sorted(out, key=lambda s: -abs(s["shift"]))


def outcomes_of(outcomes: Path | str, ids: pd.Series) -> pd.Series:
    """Each prediction id's latest outcome from the outcome store (NaN while none came, or with no store)."""
    import pyarrow as pa

    from monitoring.quality.join import read_outcomes
    from monitoring.quality.keys import keys_of

    known = read_outcomes(outcomes)
    positions = known.index.positions(keys_of(pa.array(ids.to_numpy(object), pa.string())))
    found = positions >= 0
    values = np.full(len(ids), np.nan)
    values[found] = known.values[positions[found]]
    return pd.Series(values, index=ids.index)


def quality(frame: pd.DataFrame, candidate: str, control: str, thresholds: tuple[float, float]) -> dict | None:
    labelled = frame[frame["outcome"].notna()]
    y = labelled["outcome"].to_numpy(np.int64)
    if len(labelled) < 2 or np.unique(y).size < 2:
        return None
    mine, theirs = labelled["candidate_probability"].to_numpy(), labelled["probability"].to_numpy()
    verdicts = compare(candidate, control, y, mine, y, theirs)
    return {"rows_with_outcome": int(len(labelled)), "candidate": evaluate(y, mine, thresholds[0]),
            "control": evaluate(y, theirs, thresholds[1]), "verdicts": [v.as_dict() for v in verdicts]}


def replay(candidate: str, control: str, log: Path | str, *, last: int | None = 20_000,
           since: datetime | None = None, outcomes: Path | str | None = None) -> ReplayReport:
    """Score `candidate` (a tag or alias) on the logged rows `control` answered; ReplayError when it cannot run."""
    try:
        candidate_tag, control_tag = resolve_ref(candidate), resolve_ref(control)
    except (LookupError, ValueError) as exc:
        raise ReplayError(str(exc)) from None
    model = load_model(candidate_tag)
    control_name, control_version = control_tag.split(":", 1)
    columns = list(model.input_schema["columns"])
    try:
        read = read_window(log, control_name, control_version, None, since=since, last=last, max_rows=last)
    except LogMissing as exc:
        raise ReplayError(str(exc)) from None
    frame = read.frame
    if "shadow" in frame.columns:
        frame = frame[~frame["shadow"].eq(True).fillna(False).astype(bool)]
    window = f"{len(frame)} rows of {control_tag}" + (f" since {since.isoformat()}" if since else f", the last {last}")
    report = ReplayReport(candidate_tag, control_tag, len(frame), window)
    missing = [c for c in columns if c not in frame.columns]
    if frame.empty or missing:
        report.error = f"the log lacks the inputs {missing}" if missing and not frame.empty else None
        return report
    frame = frame.reset_index(drop=True)
    inputs = frame[columns]
    try:
        proba = model.predict_proba(inputs)
    except Exception as exc:  # noqa: BLE001 - a candidate that raises on real traffic is the finding
        report.error = f"{type(exc).__name__}: {exc}"
        return report
    frame["candidate_probability"] = proba
    frame["candidate_prediction"] = model.classify(proba)
    difference = proba - frame["probability"].to_numpy(np.float64)
    report.agreement = round(float((frame["prediction"] == frame["candidate_prediction"]).mean()), 5)
    value, noise = psi_of(frame["probability"].to_numpy(np.float64), proba)
    report.shift = {"mean": round(float(difference.mean()), 5), "mean_abs": round(float(np.abs(difference).mean()), 5),
                    "psi": round(value, 5), "psi_noise99": round(noise, 5)}
    important = model.metadata.get("feature_importance", {}).get("important", [])
    report.segments = segments(frame, model.input_schema, important)
    if outcomes is not None and "prediction_id" in frame.columns:
        frame["outcome"] = outcomes_of(outcomes, frame["prediction_id"])
        control_model = load_model(control_tag, estimator=False)
        report.quality = quality(frame, candidate_tag, control_tag, (model.threshold, control_model.threshold))
    return report


def to_html(report: ReplayReport) -> str:
    title = f"Replay: {html.escape(report.candidate)} on {html.escape(report.window)}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>body{{font-family:"
             "sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
             "text-align:right}</style></head><body>", f"<h1>{title}</h1>"]
    if report.error:
        parts.append(f"<p><b>The candidate failed:</b> {html.escape(report.error)}</p>")
    elif report.agreement is not None:
        parts.append(f"<p>Predicted class agrees on <b>{report.agreement:.2%}</b> of {report.rows} rows; shift "
                     f"{html.escape(str(report.shift))}.</p><h2>By segment, biggest shift first</h2>")
        parts.append(pd.DataFrame(report.segments).to_html(index=False))
    if report.quality:
        parts.append(f"<h2>On {report.quality['rows_with_outcome']} rows with an outcome</h2>")
        parts.append(pd.DataFrame([{"model": "candidate", **report.quality["candidate"]},
                                   {"model": "control", **report.quality["control"]}]).drop(
            columns=["calibration"], errors="ignore").to_html(index=False))
        parts.append(pd.DataFrame(report.quality["verdicts"]).to_html(index=False))
    return "\n".join(parts) + "</body></html>\n"


def main(argv: list[str] | None = None) -> int:
    from monitoring.drift.errors import DriftError
    from monitoring.drift.window import parse_since
    from settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True)
    parser.add_argument("--candidate", help="tag or alias (default TASK@candidate)")
    parser.add_argument("--control", help="tag or alias whose logged traffic is replayed (default TASK@production)")
    parser.add_argument("--log", default=str(settings.prediction_log_path), help="log, folder of logs or glob")
    parser.add_argument("--outcomes", default=str(settings.outcome_log_path), help="the outcome store")
    parser.add_argument("--last", type=int, default=20_000, help="replay at most the last N rows (default 20,000)")
    parser.add_argument("--since", help="only rows logged since (ISO 8601, or 30m, 24h, 7d)")
    parser.add_argument("--out", default=str(settings.state_dir / "replay"), help="folder of the JSON and HTML")
    args = parser.parse_args(argv)
    try:
        since = parse_since(args.since) if args.since else None
        report = replay(args.candidate or f"{args.task}@candidate", args.control or f"{args.task}@production",
                        args.log, last=args.last, since=since, outcomes=args.outcomes)
    except (ReplayError, DriftError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"replay_{args.task}.json").write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
    (out / f"replay_{args.task}.html").write_text(to_html(report))
    print(f"{report.candidate} replayed on {report.window}")
    if report.error:
        print(f"the candidate failed: {report.error}")
    elif report.agreement is None:
        print("nothing to replay: the window holds no row of the control")
    else:
        print(f"agreement {report.agreement:.2%}; mean shift {report.shift['mean']:+.4f} (mean |shift| "
              f"{report.shift['mean_abs']:.4f}, PSI {report.shift['psi']:.4f})")
        for s in report.segments[:3]:
            print(f"  {s['column']}={s['value']}: {s['rows']} rows, shift {s['shift']:+.4f}, agreement {s['agreement']:.2%}")
    if report.quality:
        verdicts = ", ".join(f"{v['metric']} {v['verdict']}" for v in report.quality["verdicts"])
        print(f"on {report.quality['rows_with_outcome']} rows with an outcome: ROC AUC "
              f"{report.quality['candidate']['roc_auc']} vs {report.quality['control']['roc_auc']} ({verdicts})")
    print(f"wrote {out / f'replay_{args.task}.html'} and .json")
    return 1 if report.error else 0


if __name__ == "__main__":
    sys.exit(main())
