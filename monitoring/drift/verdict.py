"""The verdict a user acts on, from Evidently's per-column results and the model's input importance.

- `drift`: the predicted probability's distribution drifted, or one of the model's most important inputs drifted
  (permutation importance on the held-out split, measured at training time and saved in the model's metadata), or
  the share of drifted columns reached --drift-share;
- `warning`: only other inputs drifted;
- `ok`: nothing drifted.

Why not the share rule alone: `minutes_watched` inflated by 60% moves the model's output, yet only 2 of 8 columns
drift (share 0.25 < 0.3), so the share rule said "no dataset drift".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from monitoring.drift.frames import PREDICTION_COLUMN

LEVELS = ("ok", "warning", "drift")  # serving_drift_level is the index (serving/core/metrics.py keeps the same lists)
# Bounded reason codes (also the `reason` label of serving_drift_reason).
REASONS = ("prediction", "important_input", "share", "input")


@dataclass
class Verdict:
    level: Literal["ok", "warning", "drift"]
    reasons: list[str] = field(default_factory=list)  # codes from REASONS
    message: str = ""
    important_inputs: list[str] = field(default_factory=list)
    windows: list[str] = field(default_factory=list)  # the windows at this level (monitoring/drift/recent.py)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def important_inputs(metadata: dict[str, Any]) -> list[str]:
    """The model's most important inputs as saved at training time; [] for a model trained before importance."""
    return list((metadata.get("feature_importance") or {}).get("important", []))


def judge(result: dict[str, Any], important: list[str]) -> Verdict:
    drifted = [name for name, column in result["features"].items() if column["drifted"]]
    inputs = [c for c in drifted if c != PREDICTION_COLUMN]
    key = [c for c in inputs if c in important]
    reasons, parts = [], []
    if PREDICTION_COLUMN in drifted:
        reasons.append("prediction")
        parts.append("the predicted probability drifted")
    if key:
        reasons.append("important_input")
        parts.append(f"important input(s) drifted: {', '.join(key)}")
    if result["dataset_drift"]:
        reasons.append("share")
        parts.append(f"{result['drifted_columns']}/{result['columns']} columns drifted "
                     f"(share {result['drift_share']:.2f} >= {result['drift_share_threshold']:g})")
    if reasons:
        others = [c for c in inputs if c not in key]
        if others:
            parts.append(f"also drifted: {', '.join(others)}")
        return Verdict("drift", reasons, "; ".join(parts), important)
    if inputs:
        return Verdict("warning", ["input"], f"input(s) drifted, not among the model's most important "
                       f"({', '.join(important) or 'no importance saved with the model'}): {', '.join(inputs)}",
                       important)
    return Verdict("ok", [], "nothing drifted", important)


def exit_code(verdict: Verdict, fail_on_drift: bool, strict: bool) -> int:
    if not fail_on_drift:
        return 0
    return 1 if verdict.level == "drift" or (strict and verdict.level == "warning") else 0
