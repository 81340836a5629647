"""The window: which logged rows of one model version the drift job analyses.

The only module that reads the prediction log, so a faster reader replaces `load_window` and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from monitoring.drift.errors import DriftError
from monitoring.predictlog import iter_records, log_files

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
    """The logged rows of one model version chosen for analysis, and what was left out."""

    frame: pd.DataFrame
    version: str
    skipped_lines: int = 0
    other_versions: dict[str, int] = field(default_factory=dict)
    since: datetime | None = None
    last: int | None = None

    @property
    def rows(self) -> int:
        return len(self.frame)

    def bounds(self) -> tuple[str | None, str | None]:
        if self.frame.empty:
            return None, None
        stamps = self.frame["ts"]
        return stamps.min().isoformat(), stamps.max().isoformat()


def require_log(log_path: Path) -> None:
    """A DriftError unless there is a log (rotated files count) at `log_path`."""
    if not log_files(log_path):
        raise DriftError(f"no prediction log at {log_path} (set PREDICTION_LOG_PATH or pass --log)")


def load_window(
    log_path: Path, name: str, version: str, *, since: datetime | None = None, last: int | None = None
) -> Window:
    """Rows of `name` from the log (rotated files included), in the time window, split by version."""
    require_log(log_path)
    stats: dict[str, int] = {}
    records = [r for r in iter_records(log_path, stats) if r.get("model_name") == name]
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]"), "model_version": []})
    else:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601", errors="coerce")
        frame = frame.sort_values("ts", kind="stable")
        if since is not None:
            frame = frame[frame["ts"] >= pd.Timestamp(since)]
        frame["model_version"] = frame["model_version"].astype(str)
    mine = frame["model_version"] == version
    others = frame.loc[~mine, "model_version"].value_counts()
    current = frame[mine]
    if last is not None:
        current = current.tail(last)
    return Window(
        frame=current.reset_index(drop=True),
        version=version,
        skipped_lines=stats.get("skipped", 0),
        other_versions={str(k): int(v) for k, v in others.items()},
        since=since,
        last=last,
    )


def describe_others(window: Window) -> str:
    listed = ", ".join(f"{v} ({n} rows)" for v, n in sorted(window.other_versions.items(), key=lambda kv: -kv[1]))
    return f"{sum(window.other_versions.values())} rows of other versions left out: {listed}"
