"""A seeded sample of users, the same one in every run and on every partitioning."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def seeded_users(frame: "DataFrame", n: int | None, seed: int) -> "DataFrame":
    """user_id of ``n`` users of ``frame`` (all when n is None): the smallest xxhash64(user_id, seed),
    ties by user_id, so the sample depends only on the ids and the seed."""
    from pyspark.sql import functions as F

    users = frame.select("user_id").distinct()
    if not n:
        return users
    return users.orderBy(F.xxhash64("user_id", F.lit(seed)), "user_id").limit(n)
