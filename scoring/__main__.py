"""Score a large file with a stored model: the daily batch job (score every active student each morning).

    python -m scoring --input students.parquet --model purchase_gbm --output scored/today.parquet
    python -m scoring --input students.csv --model purchase_gbm:v3 --output today.parquet --log-predictions
    python -m scoring --input day/ --model purchase_gbm --output today.parquet --engine spark \\
        --spark-master spark://master:7077 --spark-conf spark.executor.memory=4g

Reads CSV, Parquet or a folder of Parquet files; writes Parquet with the input's columns plus probability,
prediction, model_name and model_version. Rows that fail validation go to `<output>.rejects.parquet` beside the
output, with a `reason`. An existing output is replaced only with `--overwrite`. Exit status: 0 when the job ran (rejected rows included), 2 for a file-level error
(unreadable input, missing column, unknown model, an output that exists), 1 for anything unexpected.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

import bentoml

from monitoring.predictlog import Maintenance, PredictionLog
from monitoring import spark_session
from scoring import job, local
from scoring.sources import Source, open_source
from scoring.summary import Summary
from settings import get_settings
from training.store import StoredModel
from training.validation import DataError

DEFAULT_CHUNK_ROWS = 200_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scoring", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", required=True, type=Path, help="a .csv or .parquet file, or a folder of Parquet")
    parser.add_argument("--model", required=True, help="NAME or NAME:VERSION in the model store (default: latest)")
    parser.add_argument("--output", required=True, type=Path, help="the scored Parquet (a folder with --engine spark)")
    parser.add_argument("--engine", choices=["local", "spark"], default="local", help="default: local (embedded)")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        help=f"rows per chunk (per Arrow batch with Spark); memory grows with it (default {DEFAULT_CHUNK_ROWS:,})",
    )
    parser.add_argument(
        "--workers", type=int, default=local.default_workers(), help="local engine: chunks scored at once (default: the cores)"
    )
    parser.add_argument(
        "--pool", choices=["thread", "process"], default="thread", help="local engine: worker kind (default: thread)"
    )
    parser.add_argument(
        "--log-predictions",
        action="store_true",
        help="also append the scored rows to the prediction log (PREDICTION_LOG_PATH) for the drift job",
    )
    parser.add_argument(
        "--spark-master",
        default=spark_session.default_master(),
        help="Spark master URL: local[*] (default, or $SPARK_MASTER), spark://host:7077, yarn, k8s://...",
    )
    parser.add_argument(
        "--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting (repeatable)"
    )
    parser.add_argument(
        "--spark-partitions", type=int, help="Spark: repartition the input first (when it has fewer splits than cores)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output (and its rejects); refused otherwise"
    )
    parser.add_argument("--summary-json", type=Path, help="also write the summary here as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.chunk_rows < 1 or args.workers < 1:
        parser.error("--chunk-rows and --workers must be at least 1")
    if any("=" not in item for item in args.spark_conf):
        parser.error("--spark-conf takes KEY=VALUE")
    return args


def _check_output(args: argparse.Namespace) -> None:
    if args.output.resolve() == args.input.resolve():
        raise DataError(f"{args.output}: the output would overwrite the input")
    if args.engine == "local" and args.output.is_dir():
        raise DataError(f"{args.output}: is a folder; the local engine writes one Parquet file")
    if args.engine == "spark" and args.output.is_file():
        raise DataError(f"{args.output}: is a file; the Spark engine writes a folder of Parquet files")
    if not args.overwrite:
        # A rerun of the day's job must not silently replace what the first run wrote.
        existing = [path for path in (args.output, job.rejects_path(args.output)) if path.exists()]
        if existing:
            raise DataError(f"{existing[0]}: already exists; pass --overwrite to replace it")


def _run_engine(
    args: argparse.Namespace, source: Source, model: StoredModel, log: PredictionLog | None, request_id: str
) -> Summary:
    if args.engine == "spark":
        from scoring import spark  # imports pyspark: only when asked for

        return spark.run(
            source,
            model,
            args.output,
            master=args.spark_master,
            conf=spark_session.parse_conf(args.spark_conf),
            chunk_rows=args.chunk_rows,
            partitions=args.spark_partitions,
            log=log,
            request_id=request_id,
            progress=not args.no_progress,
        )
    return local.run(
        source,
        model.tag,
        model.input_schema,
        args.output,
        chunk_rows=args.chunk_rows,
        workers=args.workers,
        pool=args.pool,
        log=log,
        request_id=request_id,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        source = open_source(args.input)
        model = job.cached_model(args.model)
        job.check_columns(source.columns, model.input_schema)
        _check_output(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except bentoml.exceptions.NotFound:
        home = os.environ.get("BENTOML_HOME", "~/bentoml")
        print(f"error: model {args.model!r} is not in the model store ({home}); train it first", file=sys.stderr)
        return 2
    except (bentoml.exceptions.BentoMLException, ValueError) as exc:
        print(f"error: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return 2

    settings = get_settings()
    log = None
    request_id = f"scoring-{uuid.uuid4().hex[:16]}"  # one per run: the log's rows of this batch share it
    if args.log_predictions:
        # Always synchronous (the summary counts rows on disk); rotated segments are compacted and retention applied
        # as a server does, and `close` waits for both.
        log = PredictionLog(settings.prediction_log_path, settings.prediction_log_max_bytes,
                            maintenance=Maintenance.from_settings(settings, job=True))
    try:
        summary = _run_engine(args, source, model, log, request_id)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if log is not None:
            log.close()
    print(summary.text())
    if args.summary_json:
        summary.write_json(args.summary_json)
    if log is not None and summary.logged < summary.scored:
        print(
            f"error: only {summary.logged:,} of {summary.scored:,} scored rows reached the prediction log "
            f"({settings.prediction_log_path})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
