"""Amazon Video Games 2018 (5-core, titles) TSVs -> lake frames.

items.tsv: item_id (numeric), asin, title; sequences.tsv: user_id (numeric), reviewerID,
item_ids_chronological (space-separated numeric ids, oldest first). The lake keys items by ASIN and
users by reviewerID (stable public ids); the order in a sequence becomes `position`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

CATEGORY = "Video Games"


def _read_tsv(spark: SparkSession, path: str, schema: str) -> DataFrame:
    # quote="" turns quoting off: titles such as `Ivan "Ironman" Stewart's` contain bare quotes.
    return spark.read.option("sep", "\t").option("header", True).option("quote", "").schema(schema).csv(path)


def _html_unescaped(column: str):
    """The catalogue's titles arrive HTML-escaped ("Megaman &amp; Bass", "&reg;", "&#39;"): the lake
    keeps the text people read. commons-text ships with Spark, so this stays in the JVM (no Python UDF).
    `reflect` turns a null into the string "null", so a missing title is kept null for validation."""
    unescaped = F.expr(f"reflect('org.apache.commons.text.StringEscapeUtils', 'unescapeHtml4', {column})")
    return F.when(F.col(column).isNotNull(), unescaped)


def read_games(spark: SparkSession, items_path: str, sequences_path: str) -> tuple[DataFrame, DataFrame]:
    raw_items = _read_tsv(spark, items_path, "item_num string, asin string, title string")
    items = raw_items.select(
        F.col("asin").alias("item_id"),
        _html_unescaped("title").alias("title"),
        F.lit(CATEGORY).alias("category"),
        F.lit(None).cast("string").alias("brand"),
        F.lit(None).cast("string").alias("description"),
        F.lit(None).cast("double").alias("price"),
    )
    sequences = _read_tsv(spark, sequences_path, "user_num string, reviewer_id string, item_nums string")
    exploded = sequences.select(
        F.col("reviewer_id").alias("user_id"),
        F.posexplode(F.split(F.trim(F.col("item_nums")), " ")).alias("position", "item_num"),
    )
    # A left join keeps interactions whose item number is unknown: validation quarantines them
    # with a reason instead of the loader dropping them silently.
    interactions = exploded.join(F.broadcast(raw_items.select("item_num", "asin")), "item_num", "left").select(
        "user_id",
        F.coalesce(F.col("asin"), F.concat(F.lit("unknown:"), F.col("item_num"))).alias("item_id"),
        F.col("position").cast("long"),
        F.lit(None).cast("timestamp").alias("event_ts"),
        F.lit(None).cast("double").alias("rating"),
        F.lit(None).cast("string").alias("review_title"),
        F.lit(None).cast("string").alias("review_text"),
    )
    return items, interactions
