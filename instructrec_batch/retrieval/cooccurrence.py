"""Sequential co-occurrence: items that follow the user's recent items in everyone's sequences.

transition(a -> b) = sum over all sequences of distance_decay**(d-1) for every time b follows a within
`window` positions (d = 1..window), divided by how often a occurs: a follow probability, so that a
blockbuster seed does not drown the user's other recent items. A user's score for b is the sum over
their `recent_items` latest distinct items a_k (k = 0 most recent) of recency_decay**k * transition(a_k -> b).

The counts include the user's own sequence; that only adds weight to pairs whose follower the user
has already seen, and seen items are removed afterwards, so ranking equals "others' sequences".
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ..config import RetrievalConfig
from .split import sequence_index


def transitions(indexed: DataFrame, cfg: RetrievalConfig) -> DataFrame:
    """seed_id, item_id, weight: the strongest `max_followers` followers of every item."""
    seq = indexed.select("user_id", "item_id", "idx")
    # Explode each position into its window of successor offsets and equi-join on (user, idx + d):
    # linear in the number of interactions, unlike a range join that is quadratic per user.
    ahead = seq.select(
        "user_id",
        F.col("item_id").alias("seed_id"),
        F.explode(F.sequence(F.lit(1), F.lit(cfg.window))).alias("d"),
        "idx",
    ).withColumn("idx", F.col("idx") + F.col("d"))
    pairs = ahead.join(seq, ["user_id", "idx"]).where(F.col("seed_id") != F.col("item_id"))
    weighted = pairs.groupBy("seed_id", "item_id").agg(
        F.sum(F.pow(F.lit(cfg.distance_decay), F.col("d") - 1)).alias("w")
    )
    occurrences = seq.groupBy(F.col("item_id").alias("seed_id")).agg(F.count("*").alias("occ"))
    strongest = Window.partitionBy("seed_id").orderBy(F.desc("weight"), F.asc("item_id"))
    return (
        weighted.join(occurrences, "seed_id")
        .select("seed_id", "item_id", (F.col("w") / F.col("occ")).alias("weight"))
        .withColumn("r", F.row_number().over(strongest))
        .where(F.col("r") <= cfg.max_followers)
        .drop("r")
    )


def recent_seeds(indexed: DataFrame, cfg: RetrievalConfig) -> DataFrame:
    """user_id, seed_id, recency: the user's latest distinct items, weighted recency_decay**k."""
    last_seen = indexed.groupBy("user_id", "item_id").agg(F.max("idx").alias("last_idx"))
    newest_first = Window.partitionBy("user_id").orderBy(F.desc("last_idx"), F.asc("item_id"))
    return (
        last_seen.withColumn("k", F.row_number().over(newest_first) - 1)
        .where(F.col("k") < cfg.recent_items)
        .select("user_id", F.col("item_id").alias("seed_id"), F.pow(F.lit(cfg.recency_decay), F.col("k")).alias("recency"))
    )


def cooccurrence_scores(indexed: DataFrame, users: DataFrame, cfg: RetrievalConfig) -> DataFrame:
    """user_id, item_id, score for items following the served users' recent items (seen ones included),
    and reason_item_id: the seed (an item of the user's history) that contributed most to the score."""
    seeds = recent_seeds(indexed.join(users, "user_id", "left_semi"), cfg)
    scored = seeds.join(transitions(indexed, cfg), "seed_id").withColumn("part", F.col("recency") * F.col("weight"))
    return scored.groupBy("user_id", "item_id").agg(
        F.sum("part").alias("score"),
        # Ties go to the smaller seed id, so reruns name the same item.
        F.min_by("seed_id", F.struct(-F.round("part", 12), F.col("seed_id"))).alias("reason_item_id"))
