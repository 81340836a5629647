"""The files of a prediction log as Spark's driver lists them (monitoring/spark_window.py reads them): a local source
through `monitoring.segments.discover` (as `file:` URIs), a URL through Hadoop's FileSystem with the same naming
rules; the Parquet footers' column types and torn-line counts read on the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.types import BooleanType, DataType, DoubleType, FloatType, IntegerType, LongType, StringType, TimestampType

from monitoring.logreader import LogMissing
from monitoring.segments import ARROWS, PARQUET, ROTATED, SKIPPED_KEY, discover, is_url, whole

_PARQUET_TYPES: dict[str, DataType] = {
    "INT64": LongType(), "INT32": IntegerType(), "DOUBLE": DoubleType(), "FLOAT": FloatType(),
    "BOOLEAN": BooleanType(), "BINARY": StringType(),
}


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
    streams: list[str]  # Arrow segments, read on the driver
    by_url: bool = False  # the source was a URL: the driver reads the Arrow segments through Hadoop's file systems

    def __len__(self) -> int:
        return len(self.parquet) + len(self.jsonl) + len(self.streams)


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
    matches = [root]
    if has_magic:
        matches = [s.getPath() for s in (fs.globStatus(root) or [])]
        # and the logs whose segments the glob names (an Arrow log has no file of its own name)
        for status in fs.globStatus(hadoop_path(url + ".*")) or []:
            name = status.getPath().getName()
            if ROTATED.search(name):
                matches.append(hadoop_path(status.getPath().getParent(), ROTATED.sub("", name)))
        matches = list({m.toString(): m for m in matches}.values())
    files: list[str] = []
    for path in matches:
        if fs.exists(path) and fs.getFileStatus(path).isDirectory():
            files += whole([s.getPath().toString() for s in fs.listStatus(path)
                            if s.isFile() and _is_segment_name(s.getPath().getName())])
            continue
        parent, name = path.getParent(), path.getName()
        if parent is None or not fs.exists(parent):
            continue
        family = [s.getPath().toString() for s in fs.listStatus(parent) if s.isFile()]
        files += whole([uri for uri in family if _in_family(uri.rsplit("/", 1)[-1], name)])
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
    streams = [uri for uri in uris if uri.endswith(ARROWS)]
    return LogFiles(parquet, [uri for uri in uris if not uri.endswith((PARQUET, ARROWS))], streams, is_url(source))
