"""Keeping yesterday's candidate list for a user whose history did not change.

A user's list depends on their own interactions (the seeds, the seen items) and on everyone else's (the
co-occurrence counts, popularity). Recomputing every list every night makes the lists of idle users
drift with other people's activity, and each drifted list changes that user's prompt, so the score
stage rescores them (scoring/incremental.py): on a 5,000-user lake where 5% of users had a new
interaction, 239 users without one got a different list the next night (README, "Incremental
scoring"). So a list is kept while the user's interactions and the retrieval settings are unchanged,
for at most ``retrieval.reuse_days`` days since it was computed; then it is recomputed, so the counts
it saw are never older than that.

Pure transforms: frames in, frames out; the candidates stage (pipeline/stages.py) reads and writes.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..config import RetrievalConfig, stable_hash


def retrieval_key(cfg: RetrievalConfig, retriever_version: str | None) -> str:
    """A hash of what decides every list besides the user's history: the retrieval settings (not the
    reuse window itself, nor how the follower table travels) and the sequential retriever's version."""
    settings = cfg.model_dump(exclude={"reuse_days", "followers_broadcast_rows"})
    return stable_hash({**settings, "retriever": retriever_version}, 16)


def history_fingerprints(interactions: DataFrame, users: DataFrame, key: str) -> DataFrame:
    """user_id, retrieval_fingerprint: a hash of the user's interactions (position and item, in order)
    and the retrieval key. A user with no interactions (intents only) hashes an empty history."""
    histories = interactions.groupBy("user_id").agg(
        F.array_sort(F.collect_list(F.struct("position", "item_id"))).alias("history"))
    return users.select("user_id").join(histories, "user_id", "left").select(
        "user_id", F.xxhash64(F.lit(key), F.coalesce(F.to_json("history"), F.lit("[]"))).alias("retrieval_fingerprint"))


def oldest_reusable_date(run_date: str, reuse_days: int) -> str:
    """Lists computed on this date or later may be kept on ``run_date``."""
    return (date.fromisoformat(run_date) - timedelta(days=max(reuse_days, 1) - 1)).isoformat()


def users_to_keep(previous: DataFrame, fingerprints: DataFrame, items: DataFrame, run_date: str,
                  reuse_days: int) -> DataFrame:
    """user_id of the users whose ``previous`` list is kept: same fingerprint (history and settings),
    computed within the reuse window, and every candidate still a valid item. Rows written before
    these columns existed carry nulls and are never kept."""
    gone = previous.join(items.select("item_id"), "item_id", "left_anti").select("user_id").distinct()
    return (previous.select("user_id", "retrieval_fingerprint", "retrieved_date").distinct()
            .join(fingerprints, ["user_id", "retrieval_fingerprint"], "inner")
            .where(F.col("retrieved_date") >= oldest_reusable_date(run_date, reuse_days))
            .join(gone, "user_id", "left_anti")
            .select("user_id"))
