"""The one place a SparkSession is built (jobs call this in main; library code takes a session)."""

from __future__ import annotations

import os
import sys

from .config import SparkConfig

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


def get_spark(cfg: SparkConfig):
    from pyspark.sql import SparkSession

    # Workers must run the same interpreter (the venv's), or they miss the package and its pins.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.app_name)
    if cfg.master:  # under spark-submit on a cluster, master comes from the launcher
        builder = builder.master(cfg.master)
    conf = {**_DEFAULTS, "spark.driver.memory": cfg.driver_memory, **cfg.conf}
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
