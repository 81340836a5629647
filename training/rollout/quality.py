"""The quality gates: is the candidate better or worse than control on what its predictions were for?

- replay (the replay step): the candidate scored offline on logged production traffic (monitoring/replay.py): it
  fails when the candidate raised, when its probabilities shift past ROLLOUT_MAX_PSI from control's on the same
  rows, or when the A/B verdict on the replayed rows that have outcomes says worse.
- quality (canary steps): the sequential A/B verdict (monitoring/abtest.py: always-valid intervals, so looking at
  every tick is safe) of the candidate's served predictions against control's since the first canary step, on the
  rows whose outcome has arrived. `worse` on any metric fails, `better` (and none worse) is `better`, else hold.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

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


def labelled(log: str, outcomes: str, since: float, tags: tuple[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(outcomes, probabilities) of each version's served predictions since `since` that have an outcome."""
    from monitoring.quality.join import join

    joined = join(log, outcomes, datetime.fromtimestamp(since, timezone.utc))
    frame = joined.predictions
    out = {}
    for tag in tags:
        name, _, version = tag.partition(":")
        rows = frame[(frame["model_name"] == name) & (frame["model_version"].astype(str) == version)
                     & frame["outcome"].notna()]
        out[tag] = (rows["outcome"].to_numpy(np.int64), rows["probability"].to_numpy(np.float64))
    return out


def ab_gate(log: str, outcomes: str, since: float | None, candidate: str, control: str) -> GateView:
    from monitoring.quality.errors import QualityError

    if since is None:
        return GateView("quality", "n/a", "no canary traffic yet: outcomes can only name served predictions")
    try:
        arms = labelled(log, outcomes, since, (candidate, control))
    except QualityError as exc:
        return GateView("quality", "hold", f"no verdict yet: {exc}")
    (y_a, p_a), (y_b, p_b) = arms[candidate], arms[control]
    rows = {candidate: int(len(y_a)), control: int(len(y_b))}
    comparisons = [c.as_dict() for c in compare(candidate, control, y_a, p_a, y_b, p_b)]
    return verdict_view("quality", comparisons, rows)
