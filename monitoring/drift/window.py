"""The window: which logged rows of one model version the drift job analyses.

The drift job reads the prediction log only here, through the columnar reader every job shares
(monitoring/logreader.py): projected to the analysed columns, filtered on model and time, sampled past --max-rows.
With `--engine spark` the same window is read on Spark (monitoring/spark_window.py) and only the sample comes back.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from monitoring.drift.errors import DriftError
from monitoring.logreader import DEFAULT_SEED, LogMissing, WindowRead, read_window
from monitoring.segments import discover, is_url
from monitoring import spark_session

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


@dataclass(frozen=True)
class Engine:
    """Where the window is read: in this process (`local`) or on Spark (`spark`, with its master and settings)."""

    name: str = "local"
    spark_master: str = spark_session.DEFAULT_MASTER
    spark_conf: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Engine:
        conf = spark_session.parse_conf(getattr(args, "spark_conf", None) or [])
        master = getattr(args, "spark_master", None) or spark_session.default_master()
        return cls(getattr(args, "engine", "local"), master, conf)

    def summary(self) -> dict[str, str]:
        return {"engine": self.name, **({"spark_master": self.spark_master} if self.name == "spark" else {})}


LOCAL = Engine()


def log_source(text: Path | str) -> Path | str:
    """`--log` as given: a URL stays text (a Path would fold `hdfs://` into `hdfs:/`)."""
    return str(text) if is_url(text) else Path(text)


def require_log(log_path: Path | str, engine: Engine = LOCAL) -> None:
    """A DriftError unless there is a log at `log_path` (one log with its rotated segments, a folder, a glob).
    A URL is for the Spark engine, which lists it itself."""
    if is_url(log_path):
        if engine.name != "spark":
            raise DriftError(f"--log {log_path}: a URL is read by the Spark engine only (pass --engine spark)")
        return
    if not discover(log_path):
        raise DriftError(f"no prediction log at {log_path} (set PREDICTION_LOG_PATH or pass --log)")


def _read_on_spark(engine: Engine, log_path: Path | str, name: str, version: str, columns: list[str],
                   input_types: Mapping[str, str], **window) -> WindowRead:
    try:
        from monitoring import spark_window
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("pyspark", "py4j"):
            raise
        raise DriftError("--engine spark needs pyspark: pip install '.[spark]'") from None
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    try:
        spark = spark_window.open_session(engine.spark_master, engine.spark_conf)
    except (PySparkException, Py4JError, OSError) as exc:
        raise DriftError(f"cannot start Spark on {engine.spark_master}: {_first_line(exc)}") from None
    try:
        return spark_window.read_window(spark, log_path, name, version, columns, input_types, **window)
    except (PySparkException, Py4JError) as exc:
        raise DriftError(f"Spark could not read the log at {log_path}: {_first_line(exc)}") from None
    finally:
        spark.stop()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:500]


def load_window(
    log_path: Path | str, name: str, version: str, *, since: datetime | None = None, last: int | None = None,
    columns: list[str] | None = None, max_rows: int | None = None, seed: int = DEFAULT_SEED,
    engine: Engine = LOCAL, input_schema: Mapping | None = None,
) -> Window:
    """Rows of `name`:`version` (their `columns`, all when None) from the log, in the time window; rows of other
    versions are counted. Windows over `max_rows` are sampled (monitoring/logreader.py). The Spark engine needs
    `columns` and types the model's inputs from `input_schema` (the model's saved input schema)."""
    window = {"since": since, "last": last, "max_rows": max_rows, "seed": seed}
    try:
        if engine.name == "spark":
            if columns is None:
                raise DriftError("the Spark engine reads named columns only")
            types = {c: s["type"] for c, s in (input_schema or {}).get("columns", {}).items()}
            read = _read_on_spark(engine, log_path, name, version, columns, types, **window)
        else:
            read = read_window(log_path, name, version, columns, **window)
    except LogMissing:
        raise DriftError(f"no prediction log at {log_path} (set PREDICTION_LOG_PATH or pass --log)") from None
    return Window(
        frame=read.frame, version=version, skipped_lines=read.skipped_lines, other_versions=read.other_versions,
        since=since, last=last, window_rows=read.rows, sampled=read.sampled, seed=read.seed, max_rows=max_rows,
    )


def describe_others(window: Window) -> str:
    listed = ", ".join(f"{v} ({n} rows)" for v, n in sorted(window.other_versions.items(), key=lambda kv: -kv[1]))
    return f"{sum(window.other_versions.values())} rows of other versions left out: {listed}"
