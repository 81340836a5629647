"""One model version's window of the prediction log, read on Spark: for logs beyond one machine.

The same answer as `monitoring.logreader.read_window` (a `WindowRead`: the window's row count, other versions'
counts, unparseable lines, and the rows or a uniform sample of them), but the log is read, filtered and sampled by
Spark's executors and only the sample comes back to the driver (Arrow `toPandas`). Executors run no Python: the
read, the filters, the counts and the sample are all Spark SQL, so they need only the Spark installation and read
access to the log.

- Sources: a local path, folder or glob (listed by `monitoring.segments.discover`, read as `file:` URIs, so on a
  cluster the folder must be mounted at the same path on every node), or any URL Spark's Hadoop file systems read
  (`hdfs://`, `s3a://` with the hadoop-aws connector, `file://`): a log, a folder of logs or a glob, listed with
  the same naming rules through Hadoop's FileSystem on the driver.
- Compacted segments (`*.parquet`) are read with their own physical schema (a segment where every value of a
  float column happened to be whole holds int64), the model/time filter pushed down to row-group statistics; the
  torn-line count stored in each footer is read on the driver (footers only). JSONL segments (the live one, and a
  rotated one nobody compacted: read as JSON, never compacted from here) are parsed with an explicit schema;
  lines that do not parse land in `_corrupt_record` and are counted.
- No locks: executors cannot hold the log's `flock`. A segment that vanishes under the read (compacted or
  deleted by retention meanwhile) fails the Spark job; the window is then listed and read once more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType, DataType, DoubleType, FloatType, IntegerType, LongType, StringType, StructField, StructType,
    TimestampType,
)

from monitoring.logreader import DEFAULT_MAX_ROWS, DEFAULT_SEED, LogMissing, WindowRead
from monitoring.segments import PARQUET, ROTATED, SKIPPED_KEY, discover, is_url
from monitoring import spark_session

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
_PARQUET_TYPES: dict[str, DataType] = {
    "INT64": LongType(), "INT32": IntegerType(), "DOUBLE": DoubleType(), "FLOAT": FloatType(),
    "BOOLEAN": BooleanType(), "BINARY": StringType(),
}
# Session settings the reader relies on: naive log times are UTC (as pyarrow reads them) and toPandas uses Arrow.
SQL_CONF = {"spark.sql.session.timeZone": "UTC", "spark.sql.execution.arrow.pyspark.enabled": "true"}
_VANISHED = ("FILE_NOT_EXIST", "FileNotFoundException")


def open_session(master: str, conf: dict[str, str]) -> SparkSession:
    """The drift job's session (scoring's setup: master, --spark-conf, executors' environment, quiet log)."""
    return spark_session.start("drift", master, conf, {**SQL_CONF, "spark.ui.showConsoleProgress": "false"})


@dataclass(frozen=True)
class Segment:
    """A Parquet segment's footer: its columns' Spark types and the torn lines counted when it was compacted."""

    uri: str
    types: dict[str, DataType]
    skipped: int


@dataclass(frozen=True)
class LogFiles:
    parquet: list[Segment]
    jsonl: list[str]

    def __len__(self) -> int:
        return len(self.parquet) + len(self.jsonl)


# --------------------------------------------------------------------------------------------- listing


def _is_segment_name(name: str) -> bool:
    """A file of some log: a live JSONL file or a rotated segment (monitoring/segments.py's naming)."""
    if name.startswith("."):
        return False
    return bool(ROTATED.search(name)) or name.endswith(".jsonl")


def _in_family(file_name: str, live: str) -> bool:
    """`file_name` is the live file `live` or one of its rotated segments (monitoring.segments.family)."""
    return file_name == live or (file_name.startswith(live + ".") and bool(ROTATED.search(file_name[len(live):])))


def _list_url(spark: SparkSession, url: str) -> list[str]:
    """`discover` for URLs, through Hadoop's FileSystem: a folder's logs, a log's family, or a glob of either."""
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path
    root = hadoop_path(url)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    has_magic = any(c in url.split("://", 1)[1] for c in "*?[{")
    matches = [s.getPath() for s in (fs.globStatus(root) or [])] if has_magic else [root]
    files: list[str] = []
    for path in matches:
        if fs.exists(path) and fs.getFileStatus(path).isDirectory():
            files += sorted(s.getPath().toString() for s in fs.listStatus(path)
                            if s.isFile() and _is_segment_name(s.getPath().getName()))
            continue
        parent, name = path.getParent(), path.getName()
        if parent is None or not fs.exists(parent):
            continue
        family = [s.getPath().toString() for s in fs.listStatus(parent) if s.isFile()]
        files += sorted(uri for uri in family if _in_family(uri.rsplit("/", 1)[-1], name))
    return list(dict.fromkeys(files))


def _footer(spark: SparkSession, uri: str) -> Segment:
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    configuration = spark.sparkContext._jsc.hadoopConfiguration()
    source = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(path, configuration)
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(source)
    try:
        metadata = reader.getFooter().getFileMetaData()
    finally:
        reader.close()
    types: dict[str, DataType] = {}
    for column in metadata.getSchema().getFields():
        if not column.isPrimitive():
            continue
        physical = column.asPrimitiveType().getPrimitiveTypeName().name()
        annotation = str(column.getLogicalTypeAnnotation() or "")
        kind = TimestampType() if annotation.startswith("TIMESTAMP") else _PARQUET_TYPES.get(physical)
        if kind is not None:
            types[column.getName()] = kind
    skipped = metadata.getKeyValueMetaData().get(SKIPPED_KEY.decode())
    return Segment(uri, types, int(skipped) if skipped else 0)


def list_log(spark: SparkSession, source: Path | str) -> LogFiles:
    """The segments of a source, Parquet footers read. Raises LogMissing when there is none."""
    if is_url(source):
        uris = _list_url(spark, str(source))
    else:
        # Not Path.as_uri(): Hadoop's Path would take its %-escapes (a space is %20) literally.
        uris = [f"file://{path.resolve()}" for path in discover(source)]
    if not uris:
        raise LogMissing(f"no prediction log at {source}")
    parquet = [_footer(spark, uri) for uri in uris if uri.endswith(PARQUET)]
    return LogFiles(parquet, [uri for uri in uris if not uri.endswith(PARQUET)])


# --------------------------------------------------------------------------------------------- reading


def _log(spark: SparkSession, files: LogFiles, wanted: dict[str, DataType]) -> DataFrame:
    """Every segment's `wanted` columns (typed, null where a segment lacks one) and `_corrupt_record`."""
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
        if not any(marker in str(exc) for marker in _VANISHED):
            raise
        # A segment was compacted or deleted by retention between the listing and the read: list again.
        return _read(spark, source, name, version, columns, input_types or {}, since, last, max_rows, seed)


def _read(spark, source, name, version, columns, input_types, since, last, max_rows, seed) -> WindowRead:
    files = list_log(spark, source)
    wanted = {c: LOG_TYPES.get(c) or INPUT_TYPES.get(input_types.get(c, "string"), StringType())
              for c in dict.fromkeys(["ts", "model_name", "model_version", *columns])}
    log = _log(spark, files, wanted)
    corrupt = F.col(CORRUPT).isNotNull()
    # One pass counts the window per version and the unparseable lines of every JSONL segment.
    counts = (log.where(corrupt | _in_window(name, since))
              .groupBy(corrupt.alias("bad"), F.col("model_version")).count().collect())
    skipped = sum(s.skipped for s in files.parquet) + sum(r["count"] for r in counts if r["bad"])
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
