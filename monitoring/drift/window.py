"""The window: which logged rows of one model version the drift job analyses.

The drift job reads the prediction log only here, through the columnar reader every job shares
(monitoring/logreader.py): projected to the analysed columns, filtered on model and time, sampled past --max-rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from monitoring.drift.errors import DriftError
from monitoring.logreader import DEFAULT_SEED, LogMissing, read_window
from monitoring.segments import discover

DEFAULT_SINCE = "24h"  # a day of traffic: what `make drift` looks at unless told otherwise
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2026-11-22T10:00:00+00:00`, `2026-11-22` (naive times are UTC) or a duration back from now: `90m`, `24h`."""
    now = now or datetime.now(timezone.utc)
    match = _DURATION.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DriftError(
            f"--since {text!r}: expected an ISO 8601 time (2026-11-22T10:00:00Z) or a duration such as 30m, 24h, 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class WindowChoice:
    """Which rows the user asked for: rows since a time, the last N rows, or the whole log; and how to say so."""

    since: datetime | None
    last: int | None
    description: str


def choose_window(
    since: str | None = None, last: int | None = None, whole_log: bool = False, now: datetime | None = None
) -> WindowChoice:
    """The window of `--since`, `--last` or `--all`; with none of them, the last DEFAULT_SINCE."""
    if last is not None:
        return WindowChoice(None, last, f"the last {last} rows (--last)")
    if whole_log:
        return WindowChoice(None, None, "the whole log (--all)")
    if since is not None:
        return WindowChoice(parse_since(since, now), None, f"since {since} (--since)")
    return WindowChoice(
        parse_since(DEFAULT_SINCE, now), None,
        f"the last {DEFAULT_SINCE} (the default; --since, --last or --all to change)",
    )


@dataclass
class Window:
    """The logged rows of one model version chosen for analysis, and what was left out. `frame` holds every row of
    the window, or a uniform random sample of `sample_rows` of them when the window has more than `max_rows`."""

    frame: pd.DataFrame
    version: str
    skipped_lines: int = 0
    other_versions: dict[str, int] = field(default_factory=dict)
    since: datetime | None = None
    last: int | None = None
    window_rows: int | None = None
    sampled: bool = False
    seed: int | None = None
    max_rows: int | None = None

    @property
    def rows(self) -> int:
        """Rows in the whole window (analysed or not)."""
        return len(self.frame) if self.window_rows is None else self.window_rows

    def sample(self) -> dict | None:
        if not self.sampled:
            return None
        return {"rows": len(self.frame), "window_rows": self.rows, "seed": self.seed, "max_rows": self.max_rows}

    def bounds(self) -> tuple[str | None, str | None]:
        if self.frame.empty:
            return None, None
        stamps = self.frame["ts"]
        return stamps.min().isoformat(), stamps.max().isoformat()


def require_log(log_path: Path | str) -> None:
    """A DriftError unless there is a log at `log_path` (one log with its rotated segments, a folder, a glob)."""
    if not discover(log_path):
        raise DriftError(f"no prediction log at {log_path} (set PREDICTION_LOG_PATH or pass --log)")


def load_window(
    log_path: Path | str, name: str, version: str, *, since: datetime | None = None, last: int | None = None,
    columns: list[str] | None = None, max_rows: int | None = None, seed: int = DEFAULT_SEED,
) -> Window:
    """Rows of `name`:`version` (their `columns`, all when None) from the log, in the time window; rows of other
    versions are counted. Windows over `max_rows` are sampled (monitoring/logreader.py)."""
    try:
        read = read_window(log_path, name, version, columns, since=since, last=last, max_rows=max_rows, seed=seed)
    except LogMissing:
        raise DriftError(f"no prediction log at {log_path} (set PREDICTION_LOG_PATH or pass --log)") from None
    return Window(
        frame=read.frame, version=version, skipped_lines=read.skipped_lines, other_versions=read.other_versions,
        since=since, last=last, window_rows=read.rows, sampled=read.sampled, seed=read.seed, max_rows=max_rows,
    )


def describe_others(window: Window) -> str:
    listed = ", ".join(f"{v} ({n} rows)" for v, n in sorted(window.other_versions.items(), key=lambda kv: -kv[1]))
    return f"{sum(window.other_versions.values())} rows of other versions left out: {listed}"
