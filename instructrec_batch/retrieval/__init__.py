"""Candidate generation in Spark: co-occurrence, a learned sequential model (SASRec) or both merged,
back-filled by popularity, seen items excluded. ALS is the alternative personal retriever.

Public API: build_candidates, leave_one_out, candidate_recall, target_retrieval_ranks. Pure transforms: frames in, frames out
(the sequential retriever is a published registry version, retrieval/sequential.py).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ..config import RetrievalConfig
from ..errors import ModelNotFoundError
from .als import als_scores
from .cooccurrence import cooccurrence_candidates
from .merge import reciprocal_rank_fusion
from .metrics import candidate_recall, target_retrieval_ranks
from .popularity import item_popularity, popular_unseen
from .ranking import top_per_user
from .sequential import FIT_COMMAND, Retriever, resolve_retriever, retriever_for, sequential_scores
from .split import leave_one_out, sequence_index

__all__ = ["SOURCE_FEATURES", "build_candidates", "leave_one_out", "candidate_recall", "target_retrieval_ranks", "resolve_retriever", "retriever_for", "Retriever"]

# The per-source features every candidates frame carries (nulls where a source did not offer the item).
SOURCE_FEATURES = ("cooccurrence_rank", "cooccurrence_score", "sequential_rank", "sequential_score")


def _with_null_features(frame: DataFrame, names) -> DataFrame:
    """SOURCE_FEATURES columns `names` added as typed nulls (a source that did not offer the item)."""
    for c in names:
        frame = frame.withColumn(c, F.lit(None).cast("int" if c.endswith("rank") else "double"))
    return frame


def _personal(interactions: DataFrame, served: DataFrame, seen: DataFrame, cfg: RetrievalConfig,
              retriever: Retriever | None, n: int) -> DataFrame:
    """user_id, item_id, score, rank_in_source, source and SOURCE_FEATURES from the personal retriever(s)."""
    if cfg.method == "als":
        als = top_per_user(als_scores(interactions, served, cfg, n).join(seen, ["user_id", "item_id"], "left_anti"), n)
        return _with_null_features(als.withColumn("source", F.lit("als")), SOURCE_FEATURES).withColumn(
            "reason_item_id", F.lit(None).cast("string"))
    ranked: dict[str, DataFrame] = {}
    indexed = sequence_index(interactions)  # one window over the interactions for both sources
    depth = n if cfg.method == "cooccurrence" else cfg.merge_depth
    if cfg.method in ("cooccurrence", "merged"):
        ranked["cooccurrence"] = cooccurrence_candidates(indexed, served, cfg, depth)
    if cfg.method in ("sequential", "merged"):
        if retriever is None:
            raise ModelNotFoundError(
                f"retrieval.method={cfg.method} needs a fitted sequential retriever; run `{FIT_COMMAND}` "
                "first (or set retrieval.method=cooccurrence)")
        ranked["sequential"] = sequential_scores(indexed, served, retriever, depth,
                                                 cfg.sequential.batch_users)
    weights = {"cooccurrence": cfg.merge_cooccurrence_weight, "sequential": 1.0}
    merged = reciprocal_rank_fusion(ranked, cfg.merge_k, weights)
    if len(ranked) == 1:  # one source: its own score and order, not the fusion's
        (only,) = ranked
        merged = merged.withColumn("score", F.col(f"{only}_score"))
    absent = [c for c in SOURCE_FEATURES if c.rsplit("_", 1)[0] not in ranked]
    return top_per_user(_with_null_features(merged, absent), n)


def build_candidates(interactions: DataFrame, users: DataFrame, cfg: RetrievalConfig,
                     retriever: Retriever | None = None, n: int | None = None) -> DataFrame:
    """user_id, item_id, retrieval_rank (1..N), retrieval_score, source, SOURCE_FEATURES and
    reason_item_id (the history item behind a co-occurrence candidate, else null) for every user in `users`.

    The personal retriever (`retrieval.method`: co-occurrence, the sequential model, both merged by
    reciprocal-rank fusion, or ALS) goes first; popularity fills the rest, so every user gets N items
    when the catalogue has N unseen ones. Users without interactions get popularity only. An item the
    user interacted with is never a candidate. retrieval_score is comparable only within a source;
    retrieval_rank is the order to use. `retriever`: the published sequential model (methods
    sequential and merged). `n`: the list's length, `retrieval.n_candidates` unless given; a longer list
    starts with the same items in the same order (the evaluate job orders sampled candidates by one).
    """
    n = n or cfg.n_candidates
    served = users.select("user_id").distinct()
    seen = interactions.select("user_id", "item_id").distinct()
    personal = _personal(interactions, served, seen, cfg, retriever, n).withColumn("priority", F.lit(0))
    # Ask popularity for n per user beyond the seen ones; the personal picks are removed after the
    # union, so at most n popular items can be lost to them: 2n is always enough.
    popular = popular_unseen(served, seen, item_popularity(interactions), 2 * n).withColumn(
        "priority", F.lit(1)
    ).withColumn("source", F.lit("popularity")).withColumn("reason_item_id", F.lit(None).cast("string"))
    popular = _with_null_features(popular, SOURCE_FEATURES)
    cols = ["user_id", "item_id", "score", "rank_in_source", "priority", "source", *SOURCE_FEATURES, "reason_item_id"]
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
            *SOURCE_FEATURES,
            "reason_item_id",
        )
    )
