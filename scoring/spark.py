"""The Spark engine: the same job on Apache Spark, for inputs one machine cannot score in time.

`local[*]` runs Spark inside this machine (what the tests use); in production pass a cluster master URL with
`--spark-master spark://host:7077` (or `yarn`, `k8s://https://...`) and executor settings with `--spark-conf`.
What executors need:
- the same Python with pyarrow, pandas, scikit-learn and bentoml: `PYSPARK_PYTHON` defaults to this interpreter,
  which is right for `local[*]`; on a cluster export it to the executors' interpreter path before running.
- the project's code: this module ships `scoring`, `training`, `monitoring` and `settings.py` as a zip with
  `addPyFile`, so executors run exactly the driver's validation and feature code.
- the model store: `BENTOML_HOME` is passed to executors (`spark.executorEnv.BENTOML_HOME`), so it must name a
  path every executor can read (a shared filesystem, or a store synced to each node). Executors load the exact
  `name:version` the driver resolved, once per Python worker process (Spark reuses its workers across tasks).

Each Arrow batch (`--chunk-rows` rows at most) goes through `job.score_chunk` inside `mapInPandas`. Rejects are
a second, cheap pass over the input that only validates: a single pass would have to cache the whole scored
input to write two outputs. Spark parallelises over input splits: Parquet row groups (write inputs with row
groups of ~100k-1M rows, not one huge group) and CSV byte ranges; `--spark-partitions N` reshuffles an input
that has too few. Both outputs are folders of Parquet part files (one per input split), which
`pandas.read_parquet`, `pyarrow.dataset`, Spark and DuckDB read whole; Spark keeps no row order.
"""

from __future__ import annotations

import tempfile
import time
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DataType, DoubleType, LongType, StringType, StructField, StructType

from monitoring.predictlog import PredictionLog
from monitoring import spark_session
from scoring import job
from scoring.sources import Source
from scoring.summary import Summary
from training.store import StoredModel

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("scoring", "training", "monitoring", "settings.py")
MODEL_COLUMN_TYPES: dict[str, DataType] = {"integer": LongType(), "number": DoubleType(), "string": StringType()}
OUTPUT_TYPES: dict[str, DataType] = {
    job.PROBABILITY: DoubleType(),
    job.PREDICTION: LongType(),
    job.MODEL_NAME: StringType(),
    job.MODEL_VERSION: StringType(),
}


def _code_zip(folder: Path) -> Path:
    """The project's packages as one zip for `addPyFile`."""
    target = folder / "scoring_code.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in SHIPPED:
            path = ROOT / name
            files = [path] if path.is_file() else sorted(path.rglob("*.py"))
            for file in files:
                archive.write(file, file.relative_to(ROOT).as_posix())
    return target


def session(master: str, conf: dict[str, str], chunk_rows: int, progress: bool) -> SparkSession:
    return spark_session.start("scoring", master, conf, {
        # mapInPandas hands over Arrow batches of at most this many rows: one batch is one chunk of the job.
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(chunk_rows),
        "spark.ui.showConsoleProgress": "true" if progress else "false",
    })


def read(spark: SparkSession, source: Source) -> DataFrame:
    if source.format == "parquet":
        return spark.read.parquet(str(source.path))
    # Every column as text, as the embedded engine reads CSV; `escape` makes "" inside quotes a quote, as pandas does.
    return spark.read.options(header=True, inferSchema=False, escape='"', mode="PERMISSIVE").csv(str(source.path))


def output_schema(input_schema: StructType, model_schema: dict[str, Any]) -> StructType:
    """The Spark twin of `job.output_schema`."""
    columns = model_schema["columns"]
    fields = [
        StructField(field.name, MODEL_COLUMN_TYPES[columns[field.name]["type"]])
        if field.name in columns
        else field
        for field in input_schema.fields
    ]
    return StructType([*fields, *(StructField(name, kind) for name, kind in OUTPUT_TYPES.items())])


def _scored_batches(tag: str, text: bool, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    model = job.cached_model(tag)
    for frame in frames:
        yield job.score_chunk(frame, model, text=text).scored


def _rejected_batches(model_schema: dict[str, Any], text: bool, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for frame in frames:
        yield job.rejected_rows(frame, model_schema, text=text)


def _append_to_log(output: Path, model: StoredModel, log: PredictionLog, request_id: str, chunk_rows: int) -> int:
    """Scored rows into the prediction log, read back from the output on the driver: executors may not share
    the driver's disk, and the log file is the driver's."""
    columns = [*model.input_schema["columns"], job.PROBABILITY, job.PREDICTION]
    logged = 0
    for batch in ds.dataset(output, format="parquet").to_batches(columns=columns, batch_size=chunk_rows):
        frame = batch.to_pandas()
        batch = job.log_batch(
            frame[list(model.input_schema["columns"])],
            frame[job.PROBABILITY],
            frame[job.PREDICTION],
            model=model,
            request_id=request_id,
        )
        if log.append(batch):
            logged += len(frame)
    return logged


def run(
    source: Source,
    model: StoredModel,
    output: Path,
    *,
    master: str,
    conf: dict[str, str],
    chunk_rows: int,
    partitions: int | None = None,
    log: PredictionLog | None = None,
    request_id: str | None = None,
    progress: bool = True,
) -> Summary:
    """Score `source` on Spark into the folders `output` and its rejects beside it; the time includes start-up."""
    started = time.perf_counter()
    rejects = job.rejects_path(output)
    spark = session(master, conf, chunk_rows, progress)
    try:
        with tempfile.TemporaryDirectory(prefix="scoring-code-") as folder:
            spark.sparkContext.addPyFile(str(_code_zip(Path(folder))))
            frame = read(spark, source)
            if partitions:
                # A shuffle, worth it only when the input has fewer splits (Parquet row groups) than the cluster has cores.
                frame = frame.repartition(partitions)
            scored = frame.mapInPandas(
                partial(_scored_batches, model.tag, source.format == "csv"), output_schema(frame.schema, model.input_schema)
            )
            scored.write.mode("overwrite").parquet(str(output))
            rejected = frame.mapInPandas(
                partial(_rejected_batches, model.input_schema, source.format == "csv"),
                StructType([*frame.schema.fields, StructField(job.REASON, StringType())]),
            )
            rejected.write.mode("overwrite").parquet(str(rejects))
    finally:
        spark.stop()
    # Counted from what was written, not with accumulators, which a retried task would count twice.
    written = ds.dataset(output, format="parquet")
    n_scored = written.count_rows()
    n_rejected = ds.dataset(rejects, format="parquet").count_rows()
    positives = pc.sum(written.to_table(columns=[job.PREDICTION])[job.PREDICTION]).as_py() or 0
    summary = Summary(
        "spark", model.tag, str(source.path), str(output), str(rejects),
        rows_in=n_scored + n_rejected, scored=n_scored, rejected=n_rejected, positives=int(positives), seconds=0.0,
    )  # fmt: skip
    if log is not None and request_id is not None:
        summary.logged = _append_to_log(output, model, log, request_id, chunk_rows)
    summary.seconds = time.perf_counter() - started
    return summary
