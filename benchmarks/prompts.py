"""Candidates + prompts benchmark (issue 3): every Amazon Games 2018 user through Spark local[2].

    nice -n 10 .venv/bin/python benchmarks/prompts.py                # all 50,546 users
    .venv/bin/python benchmarks/prompts.py --users 2000              # a quick look

Reads ../shared/data/amazon-games-2018 straight into frames shaped like the lake contract
(item_id = ASIN, user_id = reviewerID, position = order in the sequence), then times
build_candidates and build_prompts for all users (the nightly path), and measures leave-one-out
recall@N of the candidates: history without the last item -> candidates -> is the last item among the
first N. Peak memory is the RSS of this driver process plus all its children (the JVM, Python workers).
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import psutil
from pyspark.sql import functions as F

from instructrec_batch.config import SparkConfig, load_config
from instructrec_batch.instructions import build_prompts
from instructrec_batch.model.base import base_model_dir
from instructrec_batch.retrieval import build_candidates, candidate_recall, leave_one_out
from instructrec_batch.spark import get_spark

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-games-2018"


class PeakRSS:
    """Polls the RSS of this process tree (driver + JVM + Spark's Python workers) in the background."""

    def __init__(self, every_s: float = 0.5):
        self.peak, self._every, self._stop = 0, every_s, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:  # a worker that just exited
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self._every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def load_games(spark, max_users: int | None, data: Path = DATA):
    """items, interactions in the lake contract, read straight from the dataset's TSV files."""
    tsv = spark.read.option("sep", "\t").option("header", True).option("quote", "")
    raw_items = tsv.csv(str(data / "items.tsv"))
    items = raw_items.select(
        F.col("asin").alias("item_id"),
        "title",
        F.lit(None).cast("string").alias("category"),
        F.lit(None).cast("string").alias("brand"),
        F.lit(None).cast("string").alias("description"),
        F.lit(None).cast("double").alias("price"),
    )
    seqs = tsv.csv(str(data / "sequences.tsv"))
    if max_users:
        seqs = seqs.orderBy(F.col("user_id").cast("int")).limit(max_users)
    exploded = seqs.select(
        F.col("reviewerID").alias("user_id"),
        F.posexplode(F.split("item_ids_chronological", " ")).alias("position", "local_id"),
    )
    interactions = exploded.join(
        F.broadcast(raw_items.select(F.col("item_id").alias("local_id"), "asin")), "local_id"
    ).select(
        "user_id",
        F.col("asin").alias("item_id"),
        F.col("position").cast("long").alias("position"),
        F.lit(None).cast("timestamp").alias("event_ts"),
        F.lit(None).cast("double").alias("rating"),
        F.lit(None).cast("string").alias("review_title"),
        F.lit(None).cast("string").alias("review_text"),
    )
    return items, interactions


def timed(label, fn, results):
    started = time.perf_counter()
    rows = fn()
    seconds = time.perf_counter() - started
    results.append((label, seconds, rows))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=None, help="first N users only (default: all)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--show-prompt", action="store_true", help="print one rendered prompt")
    parser.add_argument("--data-dir", type=Path, default=DATA, help="the Amazon Games 2018 folder (items.tsv, sequences.tsv)")
    args = parser.parse_args()
    if not (args.data_dir / "sequences.tsv").exists():
        parser.error(f"no sequences.tsv in {args.data_dir}: pass --data-dir <shared/data/amazon-games-2018>")

    # Co-occurrence: needs nothing fitted; benchmarks/retrieval.py compares it with the merged default.
    cfg = load_config(overrides=["retrieval.method=cooccurrence"])
    tokenizer_dir = str(base_model_dir(cfg.model))
    spark = get_spark(SparkConfig(master=args.master, driver_memory="4g", conf={"spark.sql.shuffle.partitions": "8"}))
    results: list[tuple[str, float, int]] = []
    with PeakRSS() as mem:
        wall = time.perf_counter()
        items, interactions = load_games(spark, args.users, args.data_dir)
        items, interactions = items.cache(), interactions.cache()
        n_inter = timed("load (TSV -> lake frames)", lambda: interactions.count() + items.count(), results)
        users = interactions.select("user_id").distinct().cache()
        n_users = users.count()

        candidates = build_candidates(interactions, users, cfg.retrieval).cache()
        timed("candidates (all users)", candidates.count, results)
        prompts = build_prompts(interactions, items, candidates, None, tokenizer_dir, cfg.instructions).cache()
        timed("prompts (all users)", prompts.count, results)
        serve_s = time.perf_counter() - wall

        history, targets = leave_one_out(interactions)
        eval_cfg = cfg.retrieval.model_copy(update={"n_candidates": 50})
        eval_users = targets.select("user_id")
        loo = build_candidates(history, eval_users, eval_cfg).cache()
        timed("leave-one-out candidates (N=50)", loo.count, results)
        recall = candidate_recall(loo, targets, [10, 20, 50])
        n_targets = targets.count()
        stats = prompts.agg(
            F.avg("n_prompt_tokens").alias("avg"), F.max("n_prompt_tokens").alias("max"),
            F.avg("n_history_items").alias("hist"), F.sum(F.col("is_fallback").cast("int")).alias("fallback"),
        ).first()
        sources = {r.source: r["count"] for r in candidates.groupBy("source").count().collect()}
        example = prompts.where(F.col("n_history_items") >= 3).orderBy("user_id").first()
        total_s = time.perf_counter() - wall

    print(f"\nAmazon Games 2018: {n_users:,} users, {n_inter:,} interaction+item rows, master {args.master}")
    print(f"{'stage':<34}{'wall s':>9}{'rows':>12}{'rows/s':>11}")
    for label, seconds, rows in results:
        print(f"{label:<34}{seconds:>9.1f}{rows:>12,}{rows / seconds:>11,.0f}")
    print(f"{'candidates + prompts (serving)':<34}{serve_s:>9.1f}{n_users:>12,}{n_users / serve_s:>11,.0f}  users/s, load included")
    print(f"total wall {total_s:.1f} s; peak RSS driver + JVM + workers {mem.peak / 2**30:.2f} GiB")
    print(f"prompt tokens avg {stats['avg']:.0f}, max {stats['max']}; history items avg {stats['hist']:.1f}; "
          f"fallback users {stats['fallback']}; candidate sources {sources}")
    print(f"\nleave-one-out recall of candidates ({n_targets:,} users with a held-out item)")
    print("N    recall@N")
    for n, value in recall.items():
        print(f"{n:<5}{value:.4f}")
    if args.show_prompt and example is not None:
        print(f"\nexample prompt (user {example.user_id}, template {example.template_id}, "
              f"{example.n_prompt_tokens} tokens):\n{example.prompt}")
        print("letters -> items:", list(zip(example.candidate_letters, example.candidate_item_ids))[:5], "...")
    spark.stop()


if __name__ == "__main__":
    main()
