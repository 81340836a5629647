"""The Spark session the project's Spark jobs share: the scoring job (scoring/spark.py) and the drift job's window
reader (monitoring/spark_window.py). One place for the master URL, `--spark-conf` settings, the executors' Python
and environment, and a quiet driver log. pyspark (the `spark` extra) is imported only when a session starts, so the
command lines take their defaults from here without it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"
LOG4J_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"
FORWARDED_ENV = ("BENTOML_HOME", "BENTOML_DO_NOT_TRACK", "DO_NOT_TRACK")


def default_master() -> str:
    return os.environ.get("SPARK_MASTER", DEFAULT_MASTER)


def parse_conf(items: list[str]) -> dict[str, str]:
    """`--spark-conf KEY=VALUE` items as a dict (the caller has checked each holds a `=`)."""
    return dict(item.split("=", 1) for item in items)


def start(app_name: str, master: str, conf: dict[str, str], defaults: dict[str, str] | None = None) -> SparkSession:
    """A session on `master`; `defaults` are the job's own settings, which the user's `conf` overrides."""
    from pyspark.sql import SparkSession

    # Workers otherwise start the system python, which lacks pyarrow; a cluster sets its own path beforehand.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in (defaults or {}).items():
        builder = builder.config(key, value)
    if LOG4J_CONFIG.exists():
        # Errors only from the driver's JVM: Spark's default profile prints a dozen start-up warnings.
        builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}")
    for name in FORWARDED_ENV:
        if name in os.environ:
            builder = builder.config(f"spark.executorEnv.{name}", os.environ[name])
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
