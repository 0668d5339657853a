"""The two Delta backends side by side: the same writes of the Games interactions, timed on each.

    .venv/bin/python benchmarks/delta_backends.py --lake /tmp/full-lake          # reads its interactions

For each backend, into a fresh lake under --out: (1) the interactions snapshot written whole (what
ingest does), (2) the same 452,989 rows as one run date's partition of a run-date-partitioned table
(the shape of the nightly's writes: `candidates`), written twice (the second is a rerun that replaces
the partition), then a second date beside it. Rows are read back to check nothing was lost or doubled.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

from instructrec_batch.config import LakeConfig, load_config
from instructrec_batch.lake import Lake
from instructrec_batch.spark import get_spark


def timed(fn) -> float:
    started = time.time()
    fn()
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True, help="a lake whose interactions table is the input")
    parser.add_argument("--out", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    cfg = load_config(overrides=[f"lake.root={args.lake}", "lake.backend=delta-rs"])
    spark = get_spark(cfg.spark)
    source = Lake(cfg.lake, spark).read("interactions").cache()
    rows = source.count()
    as_candidates = source.select(
        "user_id", "item_id", F.col("position").cast("int").alias("retrieval_rank"),
        F.col("rating").alias("retrieval_score"), F.lit("benchmark").alias("source"),
    ).cache()
    as_candidates.count()
    out = Path(args.out or tempfile.mkdtemp(prefix="delta-backends-"))
    print(f"{rows:,} interactions rows; scratch lakes under {out}")
    print(f"{'backend':<12} {'snapshot s':>10} {'partition s':>11} {'rerun s':>8} {'2nd date s':>10} {'rows back':>10}")
    for backend in ("delta-rs", "spark-delta"):
        root = out / backend
        shutil.rmtree(root, ignore_errors=True)
        lake = Lake(LakeConfig(root=str(root), backend=backend), spark)
        assert lake.backend == backend
        snapshot = timed(lambda: lake.overwrite(source, "interactions"))
        d1 = as_candidates.withColumn("run_date", F.lit("2026-11-20"))
        d2 = as_candidates.withColumn("run_date", F.lit("2026-11-21"))
        first = timed(lambda: lake.replace_partition(d1, "candidates", {"run_date": "2026-11-20"}))
        rerun = timed(lambda: lake.replace_partition(d1, "candidates", {"run_date": "2026-11-20"}))
        second = timed(lambda: lake.replace_partition(d2, "candidates", {"run_date": "2026-11-21"}))
        back = lake.read_arrow("candidates", {"run_date": "2026-11-20"}).num_rows
        assert back == rows and lake.read("interactions").count() == rows, "rows lost or doubled"
        print(f"{backend:<12} {snapshot:>10.1f} {first:>11.1f} {rerun:>8.1f} {second:>10.1f} {back:>10,}", flush=True)
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
