"""Recent windows beside the main one: the verdict also looks at the newest part of the window.

Why: a day of normal traffic averages a fresh shift away. After an hour of shifted traffic (`make simulate
SIM_ARGS=--shift`), the default 24 h window of 17,423 rows scored `minutes_watched` at 0.0988 against its 0.1
threshold and said "OK"; its last 5,000 rows said DRIFT. So each run also judges
- the last `--recent-since` (default 1h) of the main window, and
- its last `--recent-rows` rows (default 5,000),
each with the same report and rules as the main window (monitoring/drift/verdict.py). The run's verdict is the
worst of them and names the window(s) that fired. A recent window with fewer than --min-rows rows, or holding the
same rows as the main window (a main window of --last 5000, or a log with fewer rows), is listed as skipped, with
the reason. The HTML report, the workspace snapshot and the per-column table stay the main window's.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitoring.drift.frames import prepare
from monitoring.drift.inputs import DriftInputs, ReadRequest
from monitoring.drift.report import DEFAULT_DRIFT_SHARE, extract, run_report
from monitoring.drift.verdict import LEVELS, Verdict, important_inputs, judge
from monitoring.drift.window import load_window, parse_since

DEFAULT_RECENT_SINCE = "1h"
DEFAULT_RECENT_ROWS = 5_000


@dataclass
class WindowVerdict:
    """One window's verdict, or why it was not judged."""

    name: str  # main, recent_time, recent_rows
    description: str
    rows: int
    first_ts: str | None = None
    last_ts: str | None = None
    drift_share: float | None = None
    drifted: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "rows": self.rows, "first_ts": self.first_ts,
                "last_ts": self.last_ts, "drift_share": self.drift_share, "drifted_columns": self.drifted,
                "verdict": self.verdict.as_dict() if self.verdict else None, "skipped": self.skipped}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recent-since", default=DEFAULT_RECENT_SINCE, metavar="DURATION",
                        help=f"also judge the last DURATION of the window (default {DEFAULT_RECENT_SINCE})")
    parser.add_argument("--recent-rows", type=int, default=DEFAULT_RECENT_ROWS, metavar="N",
                        help=f"also judge the window's last N rows (default {DEFAULT_RECENT_ROWS:,})")
    parser.add_argument("--no-recent", action="store_true", help="judge the main window only")


def main_window(inputs: DriftInputs, result: dict[str, Any], verdict: Verdict, description: str) -> WindowVerdict:
    return WindowVerdict("main", description, inputs.rows, inputs.first_ts, inputs.last_ts, result["drift_share"],
                         _drifted(result), verdict)


def _drifted(result: dict[str, Any]) -> list[str]:
    return [name for name, column in result["features"].items() if column["drifted"]]


def judge_recent(args: argparse.Namespace, request: ReadRequest, inputs: DriftInputs,
                 now: datetime | None = None) -> list[WindowVerdict]:
    """The recent windows' verdicts (each read, reported and judged like the main window)."""
    if getattr(args, "no_recent", False):
        return []
    recent_since = getattr(args, "recent_since", DEFAULT_RECENT_SINCE)
    recent_rows = getattr(args, "recent_rows", DEFAULT_RECENT_ROWS)
    model, choice = inputs.model, request.choice
    since = parse_since(recent_since, now)
    if choice.since is not None and choice.since > since:
        since = choice.since  # never older than the main window
    windows = [("recent_time", f"the last {recent_since} (--recent-since)", {"since": since, "last": choice.last}),
               ("recent_rows", f"the last {recent_rows} rows (--recent-rows)",
                {"since": choice.since, "last": min(recent_rows, choice.last or recent_rows)})]
    judged = []
    for name, description, where in windows:
        known = _known_without_reading(name, inputs, where, request.min_rows)
        if known is not None:
            judged.append(WindowVerdict(name, description, known[0], skipped=known[1]))
            continue
        window = load_window(inputs.log_path, model.name, model.version, **where,
                             columns=["ts", "model_version", *model.input_schema["columns"], "probability"],
                             max_rows=request.max_rows, seed=request.seed, engine=request.engine,
                             input_schema=model.input_schema)
        first_ts, last_ts = window.bounds()
        verdict = WindowVerdict(name, description, window.rows, first_ts, last_ts)
        if window.rows < request.min_rows:
            verdict.skipped = f"too few rows ({window.rows} < --min-rows {request.min_rows})"
        elif window.rows == inputs.rows and first_ts == inputs.first_ts:
            verdict.skipped = "the same rows as the main window"
        else:
            reference, current, numerical, categorical = prepare(
                model.input_schema, model.reference(), window.frame, source=str(inputs.log_path))
            result = extract(run_report(reference, current, numerical, categorical,
                                        drift_share=getattr(args, "drift_share", DEFAULT_DRIFT_SHARE)).dict())
            verdict.drift_share, verdict.drifted = result["drift_share"], _drifted(result)
            verdict.verdict = judge(result, important_inputs(model.metadata))
        judged.append(verdict)
    return judged


def _known_without_reading(name: str, inputs: DriftInputs, where: dict[str, Any], min_rows: int
                           ) -> tuple[int, str] | None:
    """(rows, why skipped) when the main window already tells exactly, so the log is not read again (on Spark, a
    read is a session): it has no more rows than the recent rows window takes, or its newest row is older than the
    recent time window, or all of it is newer. Its time bounds are exact only when it was not sampled."""
    same = inputs.rows, "the same rows as the main window"
    if name == "recent_rows":
        return same if inputs.rows <= where["last"] else None
    if inputs.sample is not None or inputs.first_ts is None:
        return None
    if datetime.fromisoformat(inputs.last_ts) < where["since"]:
        return 0, f"too few rows (0 < --min-rows {min_rows})"
    return same if datetime.fromisoformat(inputs.first_ts) >= where["since"] else None


def combine(windows: list[WindowVerdict]) -> Verdict:
    """The run's verdict: the worst level over the judged windows, naming the window(s) at that level."""
    judged = [w for w in windows if w.verdict is not None]
    worst = max(judged, key=lambda w: LEVELS.index(w.verdict.level))
    level = worst.verdict.level
    firing = [w for w in judged if w.verdict.level == level]
    main = windows[0].verdict
    if len(judged) == 1:  # the recent windows were skipped: the main window's verdict, as it was
        return Verdict(main.level, main.reasons, main.message, main.important_inputs,
                       [] if main.level == "ok" else ["main"])
    if level == "ok":
        return Verdict("ok", [], f"nothing drifted in {len(judged)} windows", main.important_inputs)
    reasons = list(dict.fromkeys(r for w in firing for r in w.verdict.reasons))
    message = "; ".join(f"in {w.description}: {w.verdict.message}" for w in firing)
    return Verdict(level, reasons, message, main.important_inputs, [w.name for w in firing])
