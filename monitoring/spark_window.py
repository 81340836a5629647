"""One model version's window of the prediction log, read on Spark: for logs beyond one machine.

The same answer as `monitoring.logreader.read_window` (a `WindowRead`: the window's row count, other versions'
counts, unparseable lines, and the rows or a uniform sample of them), but the log is read, filtered and sampled by
Spark's executors and only the sample comes back to the driver (Arrow `toPandas`). Executors run no Python: the
read, the filters, the counts and the sample are all Spark SQL, so they need only the Spark installation and read
access to the log.

- Sources: a local path, folder or glob (read as `file:` URIs, so on a cluster the folder must be mounted at the
  same path on every node), or any URL Spark's Hadoop file systems read (`hdfs://`, `s3a://` with the hadoop-aws
  connector, `file://`): a log, a folder of logs or a glob (listed by monitoring/spark_listing.py).
- Compacted segments (`*.parquet`) are read with their own physical schema (a segment where every value of a
  float column happened to be whole holds int64), the model/time filter pushed down to row-group statistics; the
  torn-line count stored in each footer is read on the driver (footers only). Arrow segments not compacted yet
  (`*.arrows`: the ones being written, at most PREDICTION_LOG_MAX_BYTES per writer and schema, and sealed ones
  the maintenance process has not reached) have no Spark reader: the driver reads them (monitoring/ipc.py; a URL's
  bytes through Spark's `binaryFile` source), keeps the model's rows in the window and hands them to Spark as an
  Arrow table; a torn batch at a segment's end is counted. JSONL segments (from versions that wrote JSON lines:
  read as JSON, never compacted from here) are parsed with an explicit schema; lines that do not parse land in
  `_corrupt_record` and are counted.
- No locks: executors cannot hold the log's `flock`. A segment that vanishes under the read (compacted or
  deleted by retention meanwhile) fails the Spark job; the window is then listed and read once more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType, DataType, DoubleType, LongType, StringType, StructField, StructType, TimestampType,
)

from monitoring import spark_session
from monitoring.ipc import read_stream_bytes
from monitoring.logreader import DEFAULT_MAX_ROWS, DEFAULT_SEED, Where, WindowRead, read_stream_segment
from monitoring.spark_listing import LogFiles, Segment, list_log

CORRUPT = "_corrupt_record"
_U = "_sample_key"
# The log's own fields (monitoring/predictlog.py); a model's inputs are typed from its saved input schema.
LOG_TYPES: dict[str, DataType] = {
    "ts": TimestampType(), "request_id": StringType(), "endpoint": StringType(), "model_name": StringType(),
    "model_version": StringType(), "routing_key": StringType(), "variant": StringType(), "alias": StringType(),
    "shadow": BooleanType(), "prediction_id": StringType(), "serial_number": LongType(),
    "probability": DoubleType(), "prediction": LongType(),
}
INPUT_TYPES: dict[str, DataType] = {"integer": LongType(), "number": DoubleType(), "string": StringType()}
_ARROW_TYPES: dict[str, pa.DataType] = {
    "timestamp": pa.timestamp("us", tz="UTC"), "string": pa.string(), "bigint": pa.int64(), "int": pa.int32(),
    "double": pa.float64(), "float": pa.float32(), "boolean": pa.bool_(),
}
# Session settings the reader relies on: naive log times are UTC (as pyarrow reads them) and toPandas uses Arrow.
SQL_CONF = {"spark.sql.session.timeZone": "UTC", "spark.sql.execution.arrow.pyspark.enabled": "true"}
_VANISHED = ("FILE_NOT_EXIST", "FileNotFoundException")


def open_session(master: str, conf: dict[str, str]) -> SparkSession:
    """The drift job's session (scoring's setup: master, --spark-conf, executors' environment, quiet log)."""
    return spark_session.start("drift", master, conf, {**SQL_CONF, "spark.ui.showConsoleProgress": "false"})


# --------------------------------------------------------------------------------------------- reading


def _streams(spark: SparkSession, files: LogFiles, where: Where) -> tuple[list[pa.Table], int]:
    """The rows of the Arrow segments that match `where`, read on the driver, and their torn batches. A local
    segment is read like the local reader reads it (a live one's batch in flight is not torn); a URL's bytes come
    through Spark's `binaryFile` source, without locks, so a torn tail counts whatever its writer's state."""
    tables, torn = [], 0
    if files.by_url and files.streams:
        for row in spark.read.format("binaryFile").load(files.streams).select("content").toLocalIterator():
            table, broken = read_stream_bytes(bytes(row["content"]))
            tables.append(table)
            torn += int(broken)
    elif files.streams:
        for uri in files.streams:  # one compacted or deleted since the listing: `read_window` lists again
            table, skipped = read_stream_segment(Path(uri.removeprefix("file://")))
            tables.append(table)
            torn += skipped
    kept = [t.filter(where.expression()) for t in tables if t.num_rows and where.columns() <= set(t.column_names)]
    return kept, torn


def _arrow_part(spark: SparkSession, tables: list[pa.Table], wanted: dict[str, DataType]) -> DataFrame | None:
    """Driver-side rows as a Spark frame with the `wanted` columns (typed like the other segments') and no corrupt
    records."""
    rows = sum(t.num_rows for t in tables)
    if not rows:
        return None
    table = pa.concat_tables(tables, promote_options="permissive")
    schema = StructType([*(StructField(c, t) for c, t in wanted.items()), StructField(CORRUPT, StringType())])
    columns = {}
    for column, kind in wanted.items():
        arrow = _ARROW_TYPES[kind.simpleString()]
        columns[column] = table[column].cast(arrow) if column in table.column_names else pa.nulls(rows, arrow)
    columns[CORRUPT] = pa.nulls(rows, pa.string())
    return spark.createDataFrame(pa.table(columns), schema=schema)


def _log(spark: SparkSession, files: LogFiles, wanted: dict[str, DataType], driver: list[pa.Table]) -> DataFrame:
    """Every segment's `wanted` columns (typed, null where a segment lacks one) and `_corrupt_record`; `driver`: the
    Arrow segments' rows, read on the driver."""
    parts: list[DataFrame] = []
    groups: dict[tuple, list[Segment]] = {}
    for segment in files.parquet:
        # Files are read together when their columns have the same physical types: Spark converts none on read.
        key = tuple((c, segment.types[c].simpleString()) for c in wanted if c in segment.types)
        groups.setdefault(key, []).append(segment)
    for group in groups.values():
        present = {c: group[0].types[c] for c in wanted if c in group[0].types}
        frame = spark.read.schema(StructType([StructField(c, t) for c, t in present.items()]))
        frame = frame.parquet(*(segment.uri for segment in group))
        parts.append(frame.select(
            *[(F.col(c) if c in present else F.lit(None)).cast(t).alias(c) for c, t in wanted.items()],
            F.lit(None).cast(StringType()).alias(CORRUPT),
        ))
    if files.jsonl:
        schema = StructType([*(StructField(c, t) for c, t in wanted.items()), StructField(CORRUPT, StringType())])
        parts.append(spark.read.schema(schema).options(mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT)
                     .json(files.jsonl))
    from_driver = _arrow_part(spark, driver, wanted)
    if from_driver is not None:
        parts.append(from_driver)
    if not parts:  # only Arrow segments, and none of their rows in the window
        return spark.createDataFrame([], StructType([*(StructField(c, t) for c, t in wanted.items()),
                                                     StructField(CORRUPT, StringType())]))
    log = parts[0]
    for part in parts[1:]:
        log = log.unionByName(part)
    return log


def _in_window(name: str, since: datetime | None) -> Column:
    condition = F.col("model_name") == F.lit(name)
    if since is not None:
        condition = condition & (F.col("ts") >= F.lit(since))
    return condition


def _sample(rows: DataFrame, window_rows: int, max_rows: int, seed: int) -> pd.DataFrame:
    """An exact-size uniform sample: the `max_rows` rows with the smallest seeded random keys (a top-k, not a sort).
    Rows whose key is above a bound that keeps more than `max_rows` of them (about 5 standard deviations) are dropped
    before the top-k; should fewer pass, the same top-k runs without the bound, which yields the same rows.
    Spark's `rand(seed)` follows the partitioning: the same seed draws the same rows from the same files split the
    same way (the same files and cores), not across clusters of other sizes."""
    keyed = rows.withColumn(_U, F.rand(seed))
    bound = min(1.0, (max_rows + 5 * math.sqrt(max_rows) + 10) / window_rows)
    frame = keyed.where(F.col(_U) < bound).orderBy(_U).limit(max_rows).drop(_U).toPandas()
    if len(frame) < max_rows:
        frame = keyed.orderBy(_U).limit(max_rows).drop(_U).toPandas()
    return frame


def _typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """read_window's frame: `ts` as datetime64[ns, UTC], sorted by time."""
    if "ts" in frame.columns:
        stamps = pd.to_datetime(frame["ts"])
        stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
        frame["ts"] = stamps.astype("datetime64[ns, UTC]")
        frame = frame.sort_values("ts", kind="stable")
    return frame.reset_index(drop=True)


def read_window(
    spark: SparkSession, source: Path | str, name: str, version: str, columns: list[str],
    input_types: Mapping[str, str] | None = None, *, since: datetime | None = None, last: int | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS, seed: int = DEFAULT_SEED,
) -> WindowRead:
    """`columns` of the rows of `name`:`version` logged since `since` (the last `last` of them), sorted by time, as
    `monitoring.logreader.read_window` returns them. `input_types` maps the model's input columns to their saved
    schema types (`integer`, `number`, `string`); other columns are the log's own, or text.

    Raises LogMissing when the source holds no log."""
    for key, value in SQL_CONF.items():
        spark.conf.set(key, value)
    try:
        return _read(spark, source, name, version, columns, input_types or {}, since, last, max_rows, seed)
    except Exception as exc:
        if not isinstance(exc, FileNotFoundError) and not any(marker in str(exc) for marker in _VANISHED):
            raise
        # A segment was compacted or deleted by retention between the listing and the read: list again.
        return _read(spark, source, name, version, columns, input_types or {}, since, last, max_rows, seed)


def _read(spark, source, name, version, columns, input_types, since, last, max_rows, seed) -> WindowRead:
    files = list_log(spark, source)
    wanted = {c: LOG_TYPES.get(c) or INPUT_TYPES.get(input_types.get(c, "string"), StringType())
              for c in dict.fromkeys(["ts", "model_name", "model_version", *columns])}
    driver, torn = _streams(spark, files, Where(name, since=since))
    log = _log(spark, files, wanted, driver)
    corrupt = F.col(CORRUPT).isNotNull()
    # One pass counts the window per version and the unparseable lines of every JSONL segment.
    counts = (log.where(corrupt | _in_window(name, since))
              .groupBy(corrupt.alias("bad"), F.col("model_version")).count().collect())
    skipped = torn + sum(s.skipped for s in files.parquet) + sum(r["count"] for r in counts if r["bad"])
    versions = {str(r["model_version"]): r["count"] for r in counts if not r["bad"]}
    mine = versions.pop(version, 0)
    window_rows = mine if last is None else min(mine, last)

    rows = log.where(~corrupt & _in_window(name, since) & (F.col("model_version") == F.lit(version))).select(*columns)
    if last is not None and mine > last:
        rows = rows.orderBy(F.col("ts").desc()).limit(last)  # a top-k per partition, then one merge
    sampled = max_rows is not None and window_rows > max_rows
    frame = _sample(rows, window_rows, max_rows, seed) if sampled else rows.toPandas()
    return WindowRead(
        frame=_typed_frame(frame), rows=window_rows, other_versions=versions, skipped_lines=skipped,
        sampled=sampled, seed=seed if sampled else None, max_rows=max_rows, segments=len(files),
    )
