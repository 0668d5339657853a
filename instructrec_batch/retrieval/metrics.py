"""How good can any reranker be: the share of held-out items that retrieval puts in front of it."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def candidate_recall(candidates: DataFrame, targets: DataFrame, ns: list[int]) -> dict[int, float]:
    """{N: share of target users whose target item has retrieval_rank <= N}.

    Every target user counts in the denominator, including users that got no candidates at all.
    """
    row = target_retrieval_ranks(candidates, targets).agg(
        F.count("*").alias("users"),
        *[F.sum(F.when(F.col("retrieval_rank") <= n, 1).otherwise(0)).alias(f"hit_{n}") for n in ns],
    ).first()
    users = row["users"] or 0
    return {n: (row[f"hit_{n}"] or 0) / users if users else 0.0 for n in ns}


def target_retrieval_ranks(candidates: DataFrame, targets: DataFrame) -> DataFrame:
    """(user_id, retrieval_rank) for every target user: the target's place in the user's candidates, null
    when it is not among them; per-user values for paired comparisons of two retrievers."""
    return targets.select("user_id", "item_id").join(
        candidates.select("user_id", "item_id", "retrieval_rank"), ["user_id", "item_id"], "left"
    ).select("user_id", "retrieval_rank")
