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
from .ids import decode, encode, id_codes
from .ranking import SCORE_DIGITS, top_per_user


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
    # Rounded like every ranking here (ranking.py): sums of doubles differ in their last bits between
    # partitionings, and many followers tie exactly at the max_followers cut.
    strongest = Window.partitionBy("seed_id").orderBy(F.desc(F.round("weight", SCORE_DIGITS)), F.asc("item_id"))
    return (
        weighted.join(occurrences, "seed_id")
        .select("seed_id", "item_id", (F.col("w") / F.col("occ")).alias("weight"))
        .withColumn("r", F.row_number().over(strongest))
        .where(F.col("r") <= cfg.max_followers)
        .drop("r")
    )


def user_seeds(indexed: DataFrame, users: DataFrame, cfg: RetrievalConfig) -> DataFrame:
    """One row per served user with interactions: user_id, seen (every item of the history), seeds
    (the `recent_items` latest distinct items, newest first; ties by item_id) and by_id (the seeds in
    id order: the order co-occurrence's packed reason refers to)."""
    last_seen = (indexed.join(users, "user_id", "left_semi")
                 .groupBy("user_id", "item_id").agg(F.max("idx").alias("last_idx")))
    # Sorting (-last_idx, item_id) structs puts the newest first: one aggregation per user gives both lists.
    history = last_seen.groupBy("user_id").agg(
        F.sort_array(F.collect_list(F.struct((-F.col("last_idx")).alias("age"), "item_id"))).alias("h"))
    seeds = history.select("user_id", F.col("h.item_id").alias("seen"),
                           F.slice(F.col("h.item_id"), 1, cfg.recent_items).alias("seeds"))
    return seeds.withColumn("by_id", F.array_sort("seeds"))


def _scored_followers(seeds: DataFrame, followers: DataFrame, cfg: RetrievalConfig, broadcast: bool) -> DataFrame:
    """user_id, item_id, score and `best`: every unseen follower of the users' seeds, with the strongest
    seed's position in the user's sorted seeds packed into `best` (decoded by cooccurrence_candidates)."""
    r = cfg.recent_items
    per_seed = seeds.select("user_id", "seen", "by_id", F.posexplode("seeds").alias("k", "seed_id"))
    # The follower table is joined per task when it is small, so that rows stay partitioned by user and
    # neither the aggregation nor the ranking below shuffles them again.
    pairs = per_seed.join(F.broadcast(followers) if broadcast else followers, "seed_id").where(
        ~F.array_contains("seen", F.col("item_id")))
    part = F.pow(F.lit(cfg.recency_decay), F.col("k")) * F.col("weight")
    # The seed that contributes most names the candidate; ties go to the smaller seed id, so reruns
    # name the same item. Packing (rounded contribution, seed order) into one long keeps the aggregation
    # a hash aggregation (a struct-valued min_by makes Spark sort all rows). Bounds: a contribution is
    # at most `window` (config.py caps window * recent_items), so the product fits in a long.
    order = F.array_position("by_id", F.col("seed_id")) - 1
    packed = F.round(part * 10.0 ** SCORE_DIGITS).cast("long") * r + (r - 1 - order)
    return pairs.groupBy("user_id", "item_id").agg(F.sum(part).alias("score"), F.max(packed).alias("best"))


def cooccurrence_candidates(indexed: DataFrame, users: DataFrame, cfg: RetrievalConfig, depth: int) -> DataFrame:
    """user_id, item_id, score, rank_in_source (1..depth) and reason_item_id (the seed from the user's
    history that contributed most) for each served user's `depth` best unseen followers."""
    user_codes, item_codes = id_codes(indexed, "user_id"), id_codes(indexed, "item_id")
    # The item code table is as small as the catalogue: every task gets a copy.
    seq = encode(encode(indexed.select("user_id", "item_id", "idx"), user_codes, "user_id"),
                 item_codes, "item_id", broadcast=True)
    seeds = user_seeds(seq, encode(users.select("user_id"), user_codes, "user_id"), cfg)
    broadcast = item_codes.count() * cfg.max_followers <= cfg.followers_broadcast_rows
    top = top_per_user(_scored_followers(seeds, transitions(seq, cfg), cfg, broadcast), depth)
    r = cfg.recent_items
    named = top.join(seeds.select("user_id", "by_id"), "user_id").select(
        "user_id", "item_id", "score", "rank_in_source",
        F.element_at("by_id", (r - F.col("best") % r).cast("int")).alias("reason_item_id"))
    out = decode(decode(named, item_codes, "item_id", broadcast=True), item_codes, "reason_item_id", broadcast=True)
    return decode(out, user_codes, "user_id")
