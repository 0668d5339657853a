"""Leave-one-out splits: hold out each user's last (test) or second-to-last (validation) item."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def sequence_index(interactions: DataFrame) -> DataFrame:
    """Adds `idx` (0..n-1, chronological) and `n` (the user's length).

    `position` may have gaps (quarantined rows were removed), so order by it rather than trust it as
    an index; item_id breaks ties so that the order is deterministic.
    """
    ordered = Window.partitionBy("user_id").orderBy("position", "item_id")
    whole = Window.partitionBy("user_id")
    return interactions.withColumn("idx", F.row_number().over(ordered) - 1).withColumn("n", F.count("*").over(whole))


def leave_one_out(interactions: DataFrame, holdout: int = 1) -> tuple[DataFrame, DataFrame]:
    """(history, targets).

    history: the interactions minus each user's last `holdout` items (same columns).
    targets: user_id, item_id, position of the item `holdout` places from the end (holdout=1: the
    last item = test target; holdout=2: the one before = validation target). A user needs at least
    one item of history before the target, so users with fewer than holdout + 1 items get no target.
    """
    if holdout < 1:
        raise ValueError(f"holdout must be >= 1, got {holdout}")
    indexed = sequence_index(interactions)
    cut = F.col("n") - F.lit(holdout)
    history = indexed.where(F.col("idx") < cut).drop("idx", "n")
    targets = indexed.where((F.col("idx") == cut) & (cut >= 1)).select("user_id", "item_id", "position")
    return history, targets
