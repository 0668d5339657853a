"""The one place a SparkSession is built (jobs call this in main; library code takes a session)."""

from __future__ import annotations

import glob
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import SparkConfig

log = logging.getLogger(__name__)

# What makes Spark read and write Delta natively (README, "Delta backends"): the jars `make setup`
# fetched from Maven Central, Delta's SQL extension and its catalog.
DELTA_EXTENSIONS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

# Sensible local defaults; anything in spark.conf (YAML) wins.
_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    # delta-rs and Arrow read micros; Spark's legacy INT96 timestamps would need special handling.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
}


def delta_jar_conf(cfg: SparkConfig) -> dict[str, str]:
    """Spark settings for the Delta jars in spark.delta_jars_dir, or {} when they are not there (then
    the lake uses delta-rs) or when the configuration already brings its own jars (a cluster's
    spark.jars / spark.jars.packages)."""
    if cfg.delta_jars_dir is None or {"spark.jars", "spark.jars.packages"} & set(cfg.conf):
        return {}
    folder = Path(os.path.expanduser(cfg.delta_jars_dir))
    if not folder.is_absolute():  # relative to the checkout (next to conf/), not the working directory
        folder = Path(__file__).resolve().parents[1] / folder
    jars = sorted(glob.glob(str(folder / "*.jar")))
    if not any(Path(j).name.startswith("delta-spark_") for j in jars):
        return {}
    # spark.jars ships them to executors; the driver's class path makes them visible to the session's
    # own class loader in local mode (Delta's extension is loaded when the session starts).
    return {"spark.jars": ",".join(jars), "spark.driver.extraClassPath": os.pathsep.join(jars), **DELTA_EXTENSIONS}


def get_spark(cfg: SparkConfig):
    from pyspark.sql import SparkSession

    # Workers must run the same interpreter (the venv's), or they miss the package and its pins.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.app_name)
    if cfg.master:  # under spark-submit on a cluster, master comes from the launcher
        builder = builder.master(cfg.master)
    conf = {**_DEFAULTS, **delta_jar_conf(cfg), "spark.driver.memory": cfg.driver_memory, **cfg.conf}
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def stop_spark(spark) -> None:
    """Stop the session and its JVM. `spark.stop()` alone leaves the driver JVM running (several GB
    held until Python exits), which is exactly the memory Ray or training need next."""
    from pyspark import SparkContext

    spark.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    try:
        gateway.shutdown()
    finally:
        proc = getattr(gateway, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except Exception:
                proc.kill()
        SparkContext._gateway = None
        SparkContext._jvm = None


@contextmanager
def spark_session(cfg: SparkConfig, spark=None) -> Iterator:
    """A session for one job: the caller's when `spark` is given (theirs to stop), else a new one that
    is stopped, JVM and all, when the block ends. A job stops its own session before training or Ray
    scoring to give their memory back; a caller that runs several jobs in a row (the demo) passes one
    session to all of them, so that only the first pays for a cold JVM."""
    if spark is not None:
        yield spark
        return
    spark = get_spark(cfg)
    try:
        yield spark
    finally:
        stop_spark(spark)
