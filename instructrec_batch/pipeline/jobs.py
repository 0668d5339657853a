"""Jobs outside the nightly chain (ingest, tune, evaluate): engines opened and closed here."""

from __future__ import annotations

import logging
from datetime import date

from ..config import Config
from ..lake import Lake
from ..logs import event
from . import runs as run_records
from .stages import write_quarantine

log = logging.getLogger(__name__)


def ingest_job(cfg: Config, run_date: str | None = None) -> dict:
    from ..ingest import run_ingest
    from ..spark import get_spark

    run_date = run_date or date.today().isoformat()
    spark = get_spark(cfg.spark)
    try:
        lake = Lake(cfg.lake, spark)
        with run_records.record_stage(lake, cfg, run_date, "ingest") as run:
            result = run_ingest(spark, lake, cfg)
            bad = write_quarantine(lake, result["quarantine"], run_date, "ingest", run.run_id)
            run.quarantine_count = sum(bad.values())
            run.row_counts = result["rows"]
        print(f"lake: {lake.root}  (backend {lake.backend})")
        for table, count in result["rows"].items():
            version = result["versions"].get(table)
            suffix = f"  delta version {version}" if version is not None else ""
            print(f"  {table:<13} {count:>9,} rows{suffix}  quarantined: {bad.get(table, 0):,}" if table != "users"
                  else f"  {'users':<13} {count:>9,}")
        return result
    finally:
        spark.stop()
