"""What a user likes, computed in Spark: implicit (recent titles) and explicit (from reviews).

Explicit preference is extractive: the first sentence (or the review title) of the user's most recent
well-rated reviews as "liked", of poorly-rated ones as "disliked", plus the most frequent categories
and brands among the items the user rated well. A user with no review text gets no explicit
preference at all (P2 templates are not used for them), whatever their ratings say.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ..config import InstructionsConfig

LIKED_MIN_RATING = 4.0  # on the 1-5 Amazon scale; an unrated review counts as liked
DISLIKED_MAX_RATING = 2.0
_FIRST_SENTENCE = r"^\s*(.{8,}?[.!?])(\s|$)"


def titled(frame: DataFrame, items: DataFrame) -> DataFrame:
    """`frame` with the item's title, category and brand (title falls back to the id: never empty)."""
    meta = items.select("item_id", "title", "category", "brand")
    return frame.join(meta, "item_id", "left").withColumn("title", F.coalesce("title", "item_id"))


def recent_titles(interactions: DataFrame, items: DataFrame, max_items: int) -> DataFrame:
    """user_id, history_titles (oldest first), n_history: the latest `max_items` items' titles."""
    newest_first = Window.partitionBy("user_id").orderBy(F.desc("position"), F.desc("item_id"))
    recent = interactions.select("user_id", "item_id", "position").withColumn("r", F.row_number().over(newest_first))
    counts = interactions.groupBy("user_id").agg(F.count("*").alias("n_history"))
    kept = titled(recent.where(F.col("r") <= max_items), items)
    lists = kept.groupBy("user_id").agg(
        F.sort_array(F.collect_list(F.struct(F.col("position"), F.col("item_id"), F.col("title")))).alias("s")
    )
    return lists.select("user_id", F.col("s.title").alias("history_titles")).join(counts, "user_id")


def _top_values(rated: DataFrame, column: str, k: int) -> DataFrame:
    counted = rated.where(F.col(column).isNotNull()).groupBy("user_id", column).agg(F.count("*").alias("c"))
    order = Window.partitionBy("user_id").orderBy(F.desc("c"), F.asc(column))
    top = counted.withColumn("r", F.row_number().over(order)).where(F.col("r") <= k)
    return top.groupBy("user_id").agg(F.sort_array(F.collect_list(F.struct("r", column))).alias("s")).select(
        "user_id", F.col(f"s.{column}").alias(f"fav_{column}")
    )


def explicit_preferences(interactions: DataFrame, items: DataFrame, cfg: InstructionsConfig) -> DataFrame:
    """user_id, liked, disliked, fav_category, fav_brand (arrays) for users with at least one review."""
    cols = set(interactions.columns)
    rating = F.col("rating") if "rating" in cols else F.lit(None).cast("double")
    text = F.col("review_text") if "review_text" in cols else F.lit(None).cast("string")
    title = F.col("review_title") if "review_title" in cols else F.lit(None).cast("string")
    first = F.regexp_extract(F.coalesce(text, F.lit("")), _FIRST_SENTENCE, 1)
    snippet = F.coalesce(
        F.when(F.length(F.trim(title)) > 0, title),
        F.when(F.length(first) > 0, first),
        F.when(F.length(F.trim(text)) > 0, F.substring(text, 1, 160)),
    )
    reviews = (
        interactions.select("user_id", "item_id", "position", rating.alias("rating"), snippet.alias("snippet"))
        .where(F.col("snippet").isNotNull())
    )
    newest_first = Window.partitionBy("user_id", "liked").orderBy(F.desc("position"), F.asc("item_id"))
    k = cfg.max_review_snippets
    tagged = reviews.withColumn(
        "liked",
        F.when(F.col("rating").isNull() | (F.col("rating") >= LIKED_MIN_RATING), F.lit(1))
        .when(F.col("rating") <= DISLIKED_MAX_RATING, F.lit(-1))
        .otherwise(F.lit(0)),
    ).withColumn("r", F.row_number().over(newest_first))
    picked = tagged.where((F.col("r") <= k) & (F.col("liked") != 0))
    snippets = picked.groupBy("user_id").agg(
        F.sort_array(F.collect_list(F.when(F.col("liked") == 1, F.struct("r", "snippet")))).alias("l"),
        F.sort_array(F.collect_list(F.when(F.col("liked") == -1, F.struct("r", "snippet")))).alias("d"),
    ).select("user_id", F.col("l.snippet").alias("liked"), F.col("d.snippet").alias("disliked"))
    reviewers = reviews.select("user_id").distinct()
    well_rated = titled(
        interactions.join(reviewers, "user_id", "left_semi").where(
            rating.isNull() | (rating >= LIKED_MIN_RATING)
        ).select("user_id", "item_id"),
        items,
    )
    empty = F.array().cast("array<string>")
    return (
        reviewers.join(snippets, "user_id", "left")
        .join(_top_values(well_rated, "category", 2), "user_id", "left")
        .join(_top_values(well_rated, "brand", 2), "user_id", "left")
        .select(
            "user_id",
            *[F.coalesce(c, empty).alias(c) for c in ("liked", "disliked", "fav_category", "fav_brand")],
        )
    )


def recent_intents(intents: DataFrame | None, max_intents: int) -> DataFrame | None:
    """user_id, intents (array, most recent first): the user's latest logged queries or needs."""
    if intents is None:
        return None
    ts = F.col("event_ts") if "event_ts" in intents.columns else F.lit(None).cast("timestamp")
    newest_first = Window.partitionBy("user_id").orderBy(ts.desc_nulls_last(), F.asc("text"))
    recent = intents.where(F.col("text").isNotNull()).withColumn("r", F.row_number().over(newest_first))
    return (
        recent.where(F.col("r") <= max_intents)
        .groupBy("user_id")
        .agg(F.sort_array(F.collect_list(F.struct("r", "text"))).alias("s"))
        .select("user_id", F.col("s.text").alias("intents"))
    )


def with_user_features(frame: DataFrame, interactions: DataFrame, items: DataFrame, intents: DataFrame | None,
                       cfg: InstructionsConfig) -> DataFrame:
    """``frame`` (one row per user) with what every prompt form reads about its user: history_titles,
    n_history, the explicit preference arrays with has_reviews, and the latest intents. Inference
    prompts and training examples both build on it, so both describe a user the same way."""
    out = frame.join(recent_titles(interactions, items, cfg.max_history_items), "user_id", "left")
    prefs = explicit_preferences(interactions, items, cfg).withColumn("has_reviews", F.lit(True))
    out = out.join(prefs, "user_id", "left").withColumn("has_reviews", F.coalesce("has_reviews", F.lit(False)))
    logged = recent_intents(intents, cfg.max_intents)
    if logged is None:
        return out.withColumn("intents", F.lit(None).cast("array<string>"))
    return out.join(logged, "user_id", "left")
