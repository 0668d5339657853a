"""Keeping each user's best n rows of a scored frame, in an order that is the same on every run."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

# Scores are sums of doubles whose order depends on partitioning; rounding before ranking keeps the
# order (and the tie-break by item_id) identical across runs and partition counts.
SCORE_DIGITS = 12


def top_per_user(scores: DataFrame, n: int) -> DataFrame:
    """`scores` (user_id, item_id, score, ...) plus rank_in_source 1..n: each user's n best, ties by item_id."""
    order = Window.partitionBy("user_id").orderBy(F.desc(F.round("score", SCORE_DIGITS)), F.asc("item_id"))
    return scores.withColumn("rank_in_source", F.row_number().over(order)).where(F.col("rank_in_source") <= n)
