"""The harm gates of a live step, on the servers' own metrics over the step's window (training/rollout/evidence.py).
Each returns a GateView: `fail` (roll back now), `hold` (not enough evidence yet), `pass`, or `n/a`.

- serving: every server serves the candidate's exact version (a version that does not load there fails it).
- errors: the candidate's share of rows whose model call raised, against ROLLOUT_MAX_ERROR_RATE (and control's):
  fails when the Wilson lower bound (99%) of the candidate's rate is above both, so a model that raises on every
  call fails on its first few rows, while one rare failure does not.
- latency: the p99 of the candidate's model call (serving_inference_seconds, per version) against a limit:
  ROLLOUT_MAX_P99_SECONDS, and ROLLOUT_MAX_P99_RATIO times control's p99 where that is above a tenth of the SLO.
  A p99 of a few dozen calls is their slowest one (one call the machine delayed), so the gate fails when the share
  of the candidate's calls slower than the limit is above 1% with 99% confidence (Wilson, as the errors gate), on
  at least ROLLOUT_MIN_EVIDENCE calls: a model slower on every call fails on its first calls, one slow call does
  not fail a step.
- drift: the population stability index of the candidate's predicted probabilities against control's on the same
  traffic (a canary step: the split halves; the shadow step: the same records), against ROLLOUT_MAX_PSI plus what
  sampling noise alone reaches at 99% (`psi_noise`): it holds while that noise is above ROLLOUT_MAX_PSI itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from training.rollout.evidence import Counts, ServerView, above, histogram, psi, psi_noise, quantile, serves
from training.rollout.state import GateView

Z99 = 2.5758293035489004


@dataclass(frozen=True)
class Slo:
    max_error_rate: float
    max_p99_seconds: float
    max_p99_ratio: float
    max_psi: float
    min_evidence: int

    @classmethod
    def from_settings(cls, settings) -> Slo:
        return cls(settings.rollout_max_error_rate, settings.rollout_max_p99_seconds, settings.rollout_max_p99_ratio,
                   settings.rollout_max_psi, settings.rollout_min_evidence)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Window:
    """A live step's evidence: which of the candidate's counters it reads (served or shadow-scored), and the counts."""

    candidate: str
    control: str
    shadow: bool
    counts: dict[str, Counts]

    def of(self, tag: str) -> Counts:
        return self.counts.get(tag, {})

    def rows(self, tag: str) -> tuple[float, float]:
        """(rows answered, rows whose model call raised): the candidate's shadow rows at the shadow step."""
        prefix = "shadow_" if self.shadow and tag == self.candidate else ""
        counts = self.of(tag)
        return counts.get(f"{prefix}rows", 0.0), counts.get(f"{prefix}failures", 0.0)


def wilson(failures: float, total: float, z: float = Z99) -> tuple[float, float]:
    if total <= 0:
        return 0.0, 1.0
    p = failures / total
    center = p + z * z / (2 * total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    scale = 1 + z * z / total
    return max(0.0, (center - half) / scale), min(1.0, (center + half) / scale)


def serving_gate(views: list[ServerView], candidate: str) -> GateView:
    evidence, missing = {}, []
    for view in views:
        if view.error is not None:
            evidence[view.url] = f"unreachable: {view.error}"
            missing.append(view.url)
            continue
        served, why = serves(view, candidate)
        if why and not served:
            evidence[view.url] = why
            return GateView("serving", "fail", f"{view.url} cannot serve {candidate}: {why}", evidence)
        evidence[view.url] = "serves it" if served else "not yet"
        if not served:
            missing.append(view.url)
    if missing:
        return GateView("serving", "hold", f"not served yet by {', '.join(missing)}", evidence)
    return GateView("serving", "pass", f"every server serves {candidate}", evidence)


def errors_gate(window: Window, slo: Slo) -> GateView:
    rows, failures = window.rows(window.candidate)
    control_rows, control_failures = window.rows(window.control)
    total, control_total = rows + failures, control_rows + control_failures
    rate = failures / total if total else None
    control_rate = control_failures / control_total if control_total else 0.0
    low, _ = wilson(failures, total)
    evidence = {"candidate_rows": total, "candidate_failures": failures, "candidate_rate": rate,
                "control_rows": control_total, "control_failures": control_failures, "control_rate": control_rate,
                "candidate_rate_low99": round(low, 6), "slo": slo.max_error_rate}
    if failures and low > max(slo.max_error_rate, control_rate):
        return GateView("errors", "fail", f"{failures:.0f} of {total:.0f} candidate rows failed ({rate:.1%}; "
                        f"99% lower bound {low:.1%} > SLO {slo.max_error_rate:.1%}, control {control_rate:.1%})",
                        evidence)
    if total < slo.min_evidence:
        return GateView("errors", "hold", f"{total:.0f} candidate rows of {slo.min_evidence} needed", evidence)
    return GateView("errors", "pass", f"{failures:.0f} of {total:.0f} candidate rows failed", evidence)


def latency_gate(window: Window, slo: Slo) -> GateView:
    mine, theirs = window.of(window.candidate), window.of(window.control)
    calls = sum(v for k, v in mine.items() if k == "latency:+Inf")
    p99, control_p99 = quantile(mine, "latency", 0.99), quantile(theirs, "latency", 0.99)
    limit = slo.max_p99_seconds
    if control_p99 is not None:
        # Ratios of a few milliseconds are noise (and an algorithm change): the ratio holds above a tenth of the SLO.
        limit = min(limit, max(slo.max_p99_ratio * control_p99, slo.max_p99_seconds / 10))
    slower = above(mine, "latency", limit)
    low, _ = wilson(slower, calls)
    evidence = {"candidate_calls": calls, "candidate_p99_seconds": p99, "control_p99_seconds": control_p99,
                "limit_seconds": limit, "slo_seconds": slo.max_p99_seconds, "slo_ratio": slo.max_p99_ratio,
                "calls_slower_than_limit": round(slower, 2), "slower_share_low99": round(low, 6)}
    if calls < slo.min_evidence or p99 is None:
        return GateView("latency", "hold", f"{calls:.0f} candidate model calls of {slo.min_evidence} needed", evidence)
    if low > 0.01:
        return GateView("latency", "fail", f"candidate p99 {p99 * 1000:.1f} ms > {limit * 1000:.1f} ms: {slower:.0f} of "
                        f"{calls:.0f} calls slower (99% lower bound {low:.1%} > 1%; control p99 "
                        f"{control_p99 * 1000 if control_p99 else float('nan'):.1f} ms)", evidence)
    return GateView("latency", "pass", f"candidate p99 {p99 * 1000:.1f} ms within {limit * 1000:.1f} ms", evidence)


def drift_gate(window: Window, slo: Slo) -> GateView:
    prefix = "shadow_probability" if window.shadow else "probability"
    mine = histogram(window.of(window.candidate), prefix)
    theirs = histogram(window.of(window.control), "probability")
    rows, control_rows = sum(mine), sum(theirs)
    value = psi(theirs, mine)
    noise = psi_noise(rows, control_rows, sum(1 for a, b in zip(theirs, mine) if a + b > 0))
    evidence = {"psi": None if value is None else round(value, 5), "psi_noise99": round(noise, 5),
                "candidate_rows": rows, "control_rows": control_rows, "slo": slo.max_psi}
    if value is None or min(rows, control_rows) < slo.min_evidence or noise > slo.max_psi:
        return GateView("drift", "hold", f"{rows:.0f} candidate rows: sampling noise alone reaches a PSI of "
                        f"{noise:.3f}, over the {slo.max_psi} to judge", evidence)
    if value > slo.max_psi + noise:
        return GateView("drift", "fail", f"predicted probabilities shifted: PSI {value:.3f} > {slo.max_psi} "
                        f"(+{noise:.3f} sampling noise)", evidence)
    return GateView("drift", "pass", f"PSI {value:.3f} of predicted probabilities within {slo.max_psi} "
                    f"(+{noise:.3f} noise)", evidence)
