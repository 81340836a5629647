"""Model quality from true outcomes, per model, version, alias and variant, and the A/B verdict between variants.

    python -m monitoring.quality --task purchase                          # every logged prediction so far
    python -m monitoring.quality --task purchase --since 7d --fail-on-regression

Reads the prediction log (PREDICTION_LOG_PATH) and the outcome store (OUTCOME_LOG_PATH, filled by POST /v1/feedback)
and joins them by prediction_id: outcomes may arrive days late, and each run uses whatever has arrived. Per model,
version, alias and variant: predictions, rows with an outcome and their share, positive rate, ROC AUC (with a 95%
DeLong interval), log loss, Brier score, precision and recall at the model's threshold and a calibration table,
beside the held-out metrics stored with the model (`live_minus_held_out`). For every pair of variants that served
the same endpoint: each metric's difference with a fixed-sample 95% interval, an always-valid interval (mSPRT,
valid however often the job runs) and a verdict (`better`, `worse`, `not yet significant` with the outcomes still
needed); monitoring/abtest.py explains the method. Outcomes whose id matches no prediction in the window are
counted as unmatched, with examples. Variants with fewer than --min-rows predictions in the window (leftovers of
a promotion: a few rows under an old alias) get counts only, and are named on one line below the table.

Writes, in --out (default: the folder of QUALITY_STATE_PATH): `quality_<task>.json` (everything above),
`quality_<model>_<version>[_<alias>].html` and `.json` (Evidently's classification report per variant, computed on
a seeded uniform sample of at most --report-rows of its outcomes, which the page, the JSON summary and the table
state), a snapshot per variant in the Evidently workspace beside drift's (`make dashboard`), and the task's entry
in QUALITY_STATE_PATH, which the service exports as `serving_model_quality` and `serving_ab_verdict` gauges.

Before outcomes arrive (and beside them after), label-free estimates (CBPE, monitoring/quality/window_estimates.py)
of ROC AUC, precision, recall and accuracy per variant, per --chunk of time and per model version: in the JSON's
`estimate`, `quality_<task>_estimate.html`, the state's `estimates` (the estimate gauges) and each variant's run
in the workspace. With no outcome yet the job runs all the same: counts and estimates, and a note saying so.

Scale: the log is read one segment at a time through monitoring/logreader.py and reduced to 21 bytes per prediction;
10M predictions with 2M outcomes fit in well under 2 GB (docs/monitoring.md has the figures, bench/bench_loop.py
measures them).

Exit codes: 0 done; 1 with --fail-on-regression when a variant's live ROC AUC is below its held-out ROC AUC by more
than --tolerance beyond its 95% interval; 2 the job cannot run (no log, no prediction of the task in the window,
unknown task, a model version the estimate cannot calibrate), with a one-line message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitoring.quality.errors import QualityError
from settings import get_settings

# The job's defaults, here too so `--help` needs no heavy import (monitoring/quality/job.py uses the same values).
DEFAULT_MIN_ROWS = 100
DEFAULT_REPORT_ROWS = 20_000
DEFAULT_SEED = 0


def _chunk(text: str) -> str:
    import pandas as pd

    if text != "auto":
        try:
            if pd.Timedelta(text) <= pd.Timedelta(0):
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 15min, 1h or 1D") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.quality", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", required=True, help="purchase or drive_stats")
    parser.add_argument("--since", metavar="TIME", help="only predictions logged since TIME (ISO 8601, or 24h, 7d)")
    parser.add_argument("--log", help="the prediction log: a file, a folder of logs or a glob (default: PREDICTION_LOG_PATH)")
    parser.add_argument("--outcomes", help="the outcome store (default: OUTCOME_LOG_PATH)")
    parser.add_argument("--out", help="folder for the reports (default: QUALITY_STATE_PATH's folder)")
    parser.add_argument("--state", help="state file read by the service (default: QUALITY_STATE_PATH)")
    parser.add_argument("--workspace", help="Evidently workspace (default: the drift job's, beside DRIFT_STATE_PATH)")
    parser.add_argument("--no-evidently", action="store_true", help="skip the Evidently reports and snapshots")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit 1 when a variant's live ROC AUC fell below its held-out ROC AUC")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="ROC AUC drop tolerated by --fail-on-regression (default 0.02)")
    parser.add_argument("--min-rows", type=int, default=DEFAULT_MIN_ROWS,
                        help="variants with fewer predictions in the window (leftovers of a promotion) get no metrics, "
                        f"no table row, no verdict and no gauge; they are named below the table (default {DEFAULT_MIN_ROWS})")
    parser.add_argument("--report-rows", type=int, default=DEFAULT_REPORT_ROWS,
                        help="Evidently's report per variant runs on a uniform sample of at most this many predictions "
                        f"with an outcome (default {DEFAULT_REPORT_ROWS:,}); the metrics use all of them")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of that sample (default {DEFAULT_SEED})")
    parser.add_argument("--chunk", default="auto", type=_chunk,
                        help="time chunk of the label-free estimates: 15min, 1h, 1D... (default auto: the shortest of "
                             "1min, 5min, 15min, 1h, 6h, 1D, 7D giving at most 24 chunks over the window)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.min_rows < 1 or args.report_rows < 1:
        parser.error("--min-rows and --report-rows must be at least 1")
    settings = get_settings()
    try:
        from monitoring.drift.errors import DriftError
        from monitoring.drift.window import parse_since
        from monitoring.quality.job import Options, format_table, run

        try:
            since = parse_since(args.since) if args.since else None
        except DriftError as exc:
            raise QualityError(str(exc)) from None
        state = Path(args.state or settings.quality_state_path)
        out_dir = Path(args.out) if args.out else state.parent
        workspace = None if args.no_evidently else Path(
            args.workspace or Path(settings.drift_state_path).parent / "workspace")
        summary, found = run(
            Path(args.log or settings.prediction_log_path), Path(args.outcomes or settings.outcome_log_path),
            args.task, since, out_dir, state, workspace,
            Options(args.tolerance, args.min_rows, args.report_rows, args.seed, args.chunk),
        )
    except (QualityError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(summary))
    from monitoring.quality.window_estimates import format_estimates

    print(format_estimates(summary["estimate"]))
    if summary["note"]:
        print(f"note: {summary['note']}")
    print(f"summary {out_dir / f'quality_{args.task}.json'}")
    for line in found:
        print(f"regression: {line}")
    return 1 if found and args.fail_on_regression else 0
