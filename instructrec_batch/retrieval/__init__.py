"""Candidate generation in Spark: co-occurrence (or ALS) back-filled by popularity, seen items excluded.

Public API: build_candidates, leave_one_out, candidate_recall. Pure transforms: frames in, frames out.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ..config import RetrievalConfig
from .als import als_scores
from .cooccurrence import cooccurrence_scores
from .metrics import candidate_recall
from .popularity import item_popularity, popular_unseen
from .split import leave_one_out, sequence_index

__all__ = ["build_candidates", "leave_one_out", "candidate_recall"]

# Scores are sums of doubles whose order depends on partitioning; rounding before ranking keeps the
# order (and the tie-break by item_id) identical across runs and partition counts.
_SCORE_DIGITS = 12


def _top_per_user(scores: DataFrame, n: int) -> DataFrame:
    order = Window.partitionBy("user_id").orderBy(F.desc(F.round("score", _SCORE_DIGITS)), F.asc("item_id"))
    return scores.withColumn("rank_in_source", F.row_number().over(order)).where(F.col("rank_in_source") <= n)


def build_candidates(interactions: DataFrame, users: DataFrame, cfg: RetrievalConfig) -> DataFrame:
    """user_id, item_id, retrieval_rank (1..N), retrieval_score, source for every user in `users`.

    The personal retriever (co-occurrence or ALS) goes first; popularity fills the rest, so every
    user gets N items when the catalogue has N unseen ones. Users without interactions get popularity
    only. An item the user interacted with is never a candidate. Scores are comparable only within a
    source; retrieval_rank is the order to use.
    """
    n = cfg.n_candidates
    served = users.select("user_id").distinct()
    seen = interactions.select("user_id", "item_id").distinct()
    if cfg.method == "als":
        personal, source = als_scores(interactions, served, cfg), "als"
    else:
        personal, source = cooccurrence_scores(sequence_index(interactions), served, cfg), "cooccurrence"
    personal = _top_per_user(personal.join(seen, ["user_id", "item_id"], "left_anti"), n).withColumn(
        "priority", F.lit(0)
    ).withColumn("source", F.lit(source))
    # Ask popularity for n per user beyond the seen ones; the personal picks are removed after the
    # union, so at most n popular items can be lost to them: 2n is always enough.
    popular = popular_unseen(served, seen, item_popularity(interactions), 2 * n).withColumn(
        "priority", F.lit(1)
    ).withColumn("source", F.lit("popularity"))
    cols = ["user_id", "item_id", "score", "rank_in_source", "priority", "source"]
    both = personal.select(*cols).unionByName(popular.select(*cols))
    first = Window.partitionBy("user_id", "item_id").orderBy("priority", "rank_in_source")
    deduped = both.withColumn("k", F.row_number().over(first)).where(F.col("k") == 1)
    order = Window.partitionBy("user_id").orderBy("priority", "rank_in_source")
    return (
        deduped.withColumn("retrieval_rank", F.row_number().over(order))
        .where(F.col("retrieval_rank") <= n)
        .select(
            "user_id",
            "item_id",
            F.col("retrieval_rank").cast("int").alias("retrieval_rank"),
            F.col("score").cast("double").alias("retrieval_score"),
            "source",
        )
    )
