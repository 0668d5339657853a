"""Popularity: how many distinct users interacted with an item. The back-fill and the no-history fallback."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def item_popularity(interactions: DataFrame) -> DataFrame:
    """item_id, pop_rank (1 = most popular; ties by item_id, so deterministic), pop_score (share of users)."""
    counts = interactions.groupBy("item_id").agg(F.countDistinct("user_id").alias("users"))
    total = interactions.agg(F.countDistinct("user_id").alias("total"))
    ranked = counts.withColumn(
        "pop_rank", F.row_number().over(Window.orderBy(F.desc("users"), F.asc("item_id")))
    )
    return ranked.crossJoin(F.broadcast(total)).select(
        "item_id", "pop_rank", (F.col("users") / F.col("total")).alias("pop_score")
    )


def popular_unseen(
    users: DataFrame, seen: DataFrame, popularity: DataFrame, per_user: int
) -> DataFrame:
    """user_id, item_id, score, rank_in_source: the `per_user` most popular items each user has not seen.

    A user who has seen h items can have at most h of them among the top per_user + h, so each user
    is joined with exactly that many ranks (an equi-join on the rank: linear in users + interactions,
    no cross join with the catalogue and no guess of how deep to look).
    """
    # Each user's seen items travel as one list, so the unseen filter is a lookup on the row and the
    # rows stay partitioned by user up to the ranking (no shuffle by (user, item) for an anti-join).
    histories = seen.groupBy("user_id").agg(F.collect_set("item_id").alias("seen"))
    depth = users.join(histories, "user_id", "left").withColumn(
        "h", F.when(F.col("seen").isNull(), F.lit(0)).otherwise(F.size("seen")))
    wanted = depth.select("user_id", "seen", F.explode(F.sequence(F.lit(1), F.lit(per_user) + F.col("h"))).alias("pop_rank"))
    # The popularity table is as small as the catalogue: every task gets a copy.
    pool = wanted.join(F.broadcast(popularity), "pop_rank").where(
        F.col("seen").isNull() | ~F.array_contains("seen", F.col("item_id")))
    rank = Window.partitionBy("user_id").orderBy("pop_rank")
    return (
        pool.withColumn("rank_in_source", F.row_number().over(rank))
        .where(F.col("rank_in_source") <= per_user)
        .select("user_id", "item_id", F.col("pop_score").alias("score"), "rank_in_source")
    )
