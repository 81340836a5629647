"""Data drift of a served model: its logged inputs and predictions over a window against the reference sample saved
with the model, as an Evidently report.

    python -m monitoring.drift --model purchase_gbm                       # the last 24 h, the latest version
    python -m monitoring.drift --model purchase_gbm:v3 --last 10000       # the last 10,000 rows of that version
    python -m monitoring.drift --model purchase_gbm --since 7d --fail-on-drift    # exit 1 on dataset drift
    python -m monitoring.drift --model purchase_gbm --all                 # the whole log

What it reads: the prediction log (PREDICTION_LOG_PATH, rotated files included) and the model store. Only rows of
the requested (or resolved `latest`) version are analysed: rows of other versions of the same model are counted
and reported, never mixed in, because each version has its own reference sample. Lines that do not parse (a torn
last line while a worker writes) are skipped and counted.

What it writes, in --out (default: the folder of DRIFT_STATE_PATH):
- `<model>_drift_<UTC time>.html`: the Evidently report, headed by what it is about (model, version, window, rows,
  thresholds); `<model>_drift_<UTC time>.json`: the summary (per column: method, score, threshold, drifted; the
  share of drifted columns and the dataset drift flag; rows, window, version, lines skipped). Each run keeps its
  own pair; `<model>_drift_latest.html` and `<model>_drift_latest.json` link to the newest;
- a snapshot in the Evidently workspace (--workspace, default <out>/workspace), one project per model, whose
  dashboard plots the drift share and every column's score over time (`evidently ui --workspace ...`);
- the model's entry in DRIFT_STATE_PATH (merged with other models' entries, replaced atomically), which the
  service exports as `serving_drift_*` gauges on /metrics.

Method: Evidently's DataDriftPreset with the columns typed from the model's saved input schema. With a reference
of more than 1,000 rows Evidently uses the normed Wasserstein distance for numerical columns and the
Jensen-Shannon distance for categorical ones, each with threshold 0.1. The predicted probability is analysed as
the column `prediction_probability`. Dataset drift is declared when the share of drifted columns reaches
--drift-share (default 0.3, i.e. 3 of the 8 purchase columns: Evidently's own default of 0.5 would need half of
all columns to move and misses a shift in the two inputs that matter most plus the prediction they drive).
Windows under --min-rows (default 1,000) are refused: on training-like traffic, 200-row windows crossed the 0.3
share in 3 of 5 draws, 500-row windows flagged single columns, 1,000-row windows flagged nothing.

Windows larger than --max-rows (default 200,000) are analysed through a uniform random sample of that many rows
(--seed); the summary records the sample size, the seed and the whole window's row count.

For logs beyond one machine, `--engine spark` reads the window on Spark (the scoring job's setup: --spark-master,
--spark-conf): the log is read, filtered, counted and sampled by Spark's executors and only the sample comes back
to Evidently here. --log may then also be a URL Spark reads (hdfs://, s3a://); see monitoring/spark_window.py.

What the model relies on (monitoring/drift/attribution.py): each input's mean absolute contribution to the
predicted probability (exact Shapley values) on --attribution-rows rows of the reference and of the window, side by
side in the summary (`attribution`) and as a bar chart at the top of the report.

Verdict (monitoring/drift/verdict.py): `drift` when the predicted probability drifts, when one of the model's most
important inputs drifts (permutation importance saved at training time) or when the share rule fires; `warning`
when only other inputs drift; `ok` otherwise.

Recent windows (monitoring/drift/recent.py): a day of normal traffic averages a fresh shift away, so the verdict
also judges the window's last --recent-since (default 1h) and its last --recent-rows rows (default 5,000), and
says which window fired; --no-recent judges the main window only.

Exit codes: 0 done (also when drift is found, unless --fail-on-drift), 1 verdict `drift` with --fail-on-drift
(or `warning` with --strict too), 2 the job could not run (no log, unknown model, too few rows, a bad option, ...),
with a one-line message. Through `make drift` both 1 and 2 become make's own 2 (GNU make exits 0 or 2, whatever the
recipe returned): --status-file PATH (`make drift DRIFT_STATUS=PATH`) writes the job's own code, what it means, the
verdict and the window(s) that fired to PATH as JSON on every run, failed runs included.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitoring.drift.errors import DriftError
from monitoring.drift.job import run
from monitoring.drift.recent import add_arguments as add_recent_arguments
from monitoring.drift.report import DEFAULT_DRIFT_SHARE
from monitoring.drift.state import write_json_atomic
from monitoring.drift.window import DEFAULT_SINCE, parse_since
from monitoring.logreader import DEFAULT_MAX_ROWS, DEFAULT_SEED
from monitoring.spark_session import default_master

# Measured on the purchase models (5 windows each of training-like traffic): at 200 rows 3 of 5 windows crossed the
# 0.3 dataset-drift share (one flagged 6 of 8 columns), at 500 one window flagged 2 columns, from 1,000 rows none.
DEFAULT_MIN_ROWS = 1_000
ATTRIBUTION_ROWS = 100  # per side: about 2 s of CPU for purchase_gbm on one core, a tenth of the drift job
EXIT_CODES = {0: "done", 1: "drift found (--fail-on-drift)", 2: "the job could not run"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.drift", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="NAME, NAME:latest or NAME:VERSION from the model store")
    parser.add_argument("--log", help="the prediction log, a folder of logs (one per server) or a glob "
                        "(default: PREDICTION_LOG_PATH)")
    parser.add_argument("--out", help="folder for the HTML report and JSON summary (default: DRIFT_STATE_PATH's)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--last", type=int, metavar="N", help="only the last N logged rows of the version")
    window.add_argument("--since", metavar="TIME",
                        help=f"only rows logged since TIME (ISO 8601, or 30m, 24h, 7d; default {DEFAULT_SINCE})")
    window.add_argument("--all", action="store_true", dest="whole_log", help="the whole log, rotated files included")
    parser.add_argument("--fail-on-drift", action="store_true", help="exit 1 when the verdict is drift")
    parser.add_argument("--strict", action="store_true", help="with --fail-on-drift, exit 1 on warning too")
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                        help=f"analyse a uniform random sample of this many rows of a larger window "
                        f"(default {DEFAULT_MAX_ROWS:,}; memory stays bounded whatever the log's size)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of that sample (default 0)")
    parser.add_argument("--min-rows", type=int, default=DEFAULT_MIN_ROWS,
                        help=f"refuse smaller windows, whose scores are mostly noise (default {DEFAULT_MIN_ROWS})")
    parser.add_argument("--drift-share", type=float, default=DEFAULT_DRIFT_SHARE,
                        help=f"share of drifted columns that means dataset drift (default {DEFAULT_DRIFT_SHARE})")
    parser.add_argument("--engine", choices=["local", "spark"], default="local",
                        help="read the window in this process (local, the default) or on Spark")
    parser.add_argument("--spark-master", default=default_master(),
                        help="with --engine spark: local[*] (default, or $SPARK_MASTER), spark://host:7077, yarn, "
                        "k8s://...")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="with --engine spark: an extra Spark setting (repeatable)")
    parser.add_argument("--attribution-rows", type=int, default=ATTRIBUTION_ROWS, metavar="N",
                        help="explain N rows of the reference and of the window for the report's mean absolute "
                        f"contribution per input, side by side (default {ATTRIBUTION_ROWS}; 0: leave it out)")
    add_recent_arguments(parser)
    parser.add_argument("--status-file", metavar="PATH",
                        help="write the exit code, its meaning and the verdict to PATH as JSON, whatever happens "
                        "(for CI behind make, which turns every failure into its own exit status 2)")
    parser.add_argument("--workspace", help="Evidently workspace folder (default: <out>/workspace)")
    parser.add_argument("--state", help="drift state file read by the service (default: DRIFT_STATE_PATH)")
    return parser


def main(argv: list[str] | None = None) -> int:
    status = argparse.ArgumentParser(add_help=False)
    status.add_argument("--status-file")
    status_file = status.parse_known_args(argv)[0].status_file
    try:
        args = _parse(argv)
    except SystemExit as exc:  # a bad option: argparse has printed why
        if status_file and exc.code:
            write_status(Path(status_file), 2, None, "bad command-line option (see stderr)", False)
        raise
    summary, error = None, None
    try:
        summary, code = run(args)
    except (DriftError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code, error = 2, str(exc)
    if args.status_file:
        write_status(Path(args.status_file), code, summary, error, args.strict)
    return code


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.last is not None and args.last < 1:
        parser.error("--last must be at least 1")
    if args.min_rows < 1:
        parser.error("--min-rows must be at least 1")
    if args.max_rows < args.min_rows:
        parser.error("--max-rows must be at least --min-rows")
    if args.attribution_rows < 0:
        parser.error("--attribution-rows must be at least 0")
    if not 0 < args.drift_share <= 1:
        parser.error("--drift-share must be in (0, 1]")
    if any("=" not in item for item in args.spark_conf):
        parser.error("--spark-conf takes KEY=VALUE")
    if args.recent_rows < 1:
        parser.error("--recent-rows must be at least 1")
    try:
        parse_since(args.recent_since)
    except DriftError:
        parser.error(f"--recent-since {args.recent_since!r}: expected a duration such as 30m, 1h, 6h (or an ISO time)")
    return args


def write_status(path: Path, code: int, summary: dict | None, error: str | None, strict: bool) -> None:
    """What CI needs to tell drift from a failure when make stands in between."""
    verdict = (summary or {}).get("verdict") or {}
    meaning = EXIT_CODES[code] if code != 1 or not strict else "drift or warning found (--fail-on-drift --strict)"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {
        "exit_code": code, "meaning": meaning, "level": verdict.get("level"), "windows": verdict.get("windows", []),
        "message": verdict.get("message"), "error": error,
        "summary": str(Path(summary["report_html"]).with_suffix(".json")) if summary else None,
    })
