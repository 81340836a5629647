"""The quality gates: is the candidate better or worse than control on what its predictions were for?

- replay (the replay step): the candidate scored offline on logged production traffic (monitoring/replay.py): it
  fails when the candidate raised, when its probabilities shift past ROLLOUT_MAX_PSI from control's on the same
  rows, or when the A/B verdict on the replayed rows that have outcomes says worse.
- quality (canary steps): the candidate's served predictions against control's since the first canary step, judged
  on one of two kinds of evidence, named in the gate's summary and in `evidence["judged"]`:
  - `realized`, once each arm has ROLLOUT_MIN_EVIDENCE rows whose outcome has arrived: the sequential A/B verdict
    (monitoring/abtest.py: always-valid intervals, so looking at every tick is safe). `worse` on any metric fails,
    `better` (and none worse) is `better`, else hold.
  - `estimate`, before that: each arm's label-free ROC AUC (CBPE, monitoring/quality/estimate.py, through the
    calibrator stored with the model) with its 95% interval, on every served row. Intervals apart decide (the
    candidate's below control's fails, above is `better`); overlapping intervals hold. Two 95% intervals apart is a
    difference test at about 0.6% (equal standard errors), which keeps a look every ROLLOUT_QUALITY_SECONDS from
    turning noise into a verdict. The estimate assumes each model's calibration still holds on today's traffic: a
    model whose scores keep their distribution but lose their ranking looks unchanged to it, and only outcomes
    reveal that.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from monitoring.abtest import compare
from training.rollout.gates import Slo
from training.rollout.state import GateView


def verdict_view(gate: str, comparisons: list[dict], rows: dict) -> GateView:
    """A gate from the A/B comparisons of candidate (a) against control (b)."""
    evidence = {"rows_with_outcome": rows, "comparisons": comparisons}
    worse = [c["metric"] for c in comparisons if c["verdict"] == "worse"]
    better = [c["metric"] for c in comparisons if c["verdict"] == "better"]
    shown = ", ".join(f"{c['metric']} {c['difference']:+.4f} {c['always_valid']}" for c in comparisons
                      if c["difference"] is not None)
    if worse:
        return GateView(gate, "fail", f"candidate worse on {', '.join(worse)}: {shown}", evidence)
    if better:
        return GateView(gate, "better", f"candidate better on {', '.join(better)}: {shown}", evidence)
    needed = [c["outcomes_needed"] for c in comparisons if c["outcomes_needed"]]
    more = f"; about {min(needed)} more outcomes would decide it if the difference held" if needed else ""
    total = sum(rows.values()) if isinstance(rows, dict) else rows
    return GateView(gate, "hold", f"not yet significant on {total} outcomes{more}", evidence)


def replay_gate(report, slo: Slo) -> GateView:
    """The replay step's one look (a monitoring.replay.ReplayReport)."""
    evidence = {"rows": report.rows, "window": report.window, "agreement": report.agreement, "shift": report.shift,
                "segments": report.segments[:5]}
    if report.error:
        return GateView("replay", "fail", f"the candidate failed on logged traffic: {report.error}", evidence)
    if report.agreement is None:
        return GateView("replay", "n/a", f"nothing to replay ({report.window}): the live steps decide", evidence)
    if report.shift["psi"] > slo.max_psi + report.shift["psi_noise99"]:
        return GateView("replay", "fail", f"predicted probabilities shift on logged traffic: PSI "
                        f"{report.shift['psi']:.3f} > {slo.max_psi} (+{report.shift['psi_noise99']:.3f} noise)",
                        evidence)
    if report.quality:
        view = verdict_view("replay", report.quality["verdicts"], report.quality["rows_with_outcome"])
        if view.state != "hold":
            return GateView("replay", view.state, view.summary, {**evidence, **view.evidence})
    return GateView("replay", "pass", f"agreement {report.agreement:.1%}, PSI {report.shift['psi']:.3f} on "
                    f"{report.rows} logged rows", evidence)


def served(log: str, outcomes: str, since: float) -> pd.DataFrame:
    """The primary predictions served since `since`: model_name, model_version, probability, and outcome (NaN while
    none has arrived)."""
    from monitoring.quality.join import NO_OUTCOME, join

    joined = join(log, outcomes, datetime.fromtimestamp(since, timezone.utc))
    cells = joined.cells.reindex(joined.cell)
    return pd.DataFrame({"model_name": cells["model_name"].to_numpy(), "model_version": cells["model_version"].to_numpy(),
                         "probability": joined.probability,
                         "outcome": np.where(joined.outcome == NO_OUTCOME, np.nan, joined.outcome.astype(np.float64))})


def arm(frame: pd.DataFrame, tag: str) -> pd.DataFrame:
    name, _, version = tag.partition(":")
    return frame[(frame["model_name"] == name) & (frame["model_version"].astype(str) == version)]


def realized_gate(frame: pd.DataFrame, candidate: str, control: str) -> GateView:
    labelled = {tag: arm(frame, tag).dropna(subset=["outcome"]) for tag in (candidate, control)}
    (y_a, p_a), (y_b, p_b) = ((rows["outcome"].to_numpy(np.int64), rows["probability"].to_numpy(np.float64))
                              for rows in labelled.values())
    comparisons = [c.as_dict() for c in compare(candidate, control, y_a, p_a, y_b, p_b)]
    view = verdict_view("quality", comparisons, {tag: int(len(rows)) for tag, rows in labelled.items()})
    return GateView("quality", view.state, f"realized: {view.summary}", {"judged": "realized", **view.evidence})


def estimate_gate(frame: pd.DataFrame, candidate: str, control: str, min_rows: int, calibration) -> GateView:
    """Each arm's CBPE ROC AUC with its 95% interval; `calibration(name, version)` gives a ModelCalibration."""
    from monitoring.quality.estimate import estimate_quality

    rows = {tag: arm(frame, tag) for tag in (candidate, control)}
    evidence: dict = {"judged": "estimate", "method": "CBPE", "metric": "roc_auc",
                      "rows": {tag: int(len(r)) for tag, r in rows.items()}}
    short = [f"{tag} {len(r)}" for tag, r in rows.items() if len(r) < min_rows]
    if short:
        return GateView("quality", "hold", f"estimate: {', '.join(short)} served rows of {min_rows} needed "
                        "(no outcomes yet)", evidence)
    try:
        calibrations = {tuple(tag.split(":", 1)): calibration(*tag.split(":", 1)) for tag in rows}
        groups = estimate_quality(pd.concat(rows.values()), calibrations)
    except (LookupError, ValueError) as exc:
        return GateView("quality", "hold", f"no estimate: {exc}", evidence)
    estimates = {f"{g.group['model_name']}:{g.group['model_version']}": g for g in groups}
    evidence["estimates"] = {tag: g.as_dict() for tag, g in estimates.items()}
    evidence["calibrators"] = {tag: calibrations[tuple(tag.split(":", 1))].describe() for tag in rows}
    a, b = estimates[candidate].metrics["roc_auc"], estimates[control].metrics["roc_auc"]
    if a.ci95 is None or b.ci95 is None:
        return GateView("quality", "hold", "estimate: ROC AUC undefined (an arm predicts one class only)", evidence)
    shown = (f"estimated ROC AUC {a.value:.4f} [{a.ci95[0]:.4f}, {a.ci95[1]:.4f}] against control's {b.value:.4f} "
             f"[{b.ci95[0]:.4f}, {b.ci95[1]:.4f}] (CBPE, 95%, no outcomes yet)")
    if a.ci95[1] < b.ci95[0]:
        return GateView("quality", "fail", f"estimate: candidate worse: {shown}", evidence)
    if a.ci95[0] > b.ci95[1]:
        return GateView("quality", "better", f"estimate: candidate better: {shown}", evidence)
    return GateView("quality", "hold", f"estimate: intervals overlap: {shown}", evidence)


def model_calibration(name: str, version: str):
    from monitoring.quality.estimate import ModelCalibration

    return ModelCalibration.from_store(name, version)


def quality_gate(log: str, outcomes: str, since: float | None, candidate: str, control: str, min_outcomes: int,
            calibration=model_calibration) -> GateView:
    """Realized once each arm has `min_outcomes` outcomes, the label-free estimate before."""
    from monitoring.quality.errors import QualityError

    if since is None:
        return GateView("quality", "n/a", "no canary traffic yet: outcomes can only name served predictions")
    try:
        frame = served(log, outcomes, since)
    except QualityError as exc:
        return GateView("quality", "hold", f"no verdict yet: {exc}")
    with_outcome = {tag: int(arm(frame, tag)["outcome"].notna().sum()) for tag in (candidate, control)}
    if min(with_outcome.values()) >= min_outcomes:
        return realized_gate(frame, candidate, control)
    view = estimate_gate(frame, candidate, control, min_outcomes, calibration)
    return GateView(view.gate, view.state, view.summary, {**view.evidence, "rows_with_outcome": with_outcome})
