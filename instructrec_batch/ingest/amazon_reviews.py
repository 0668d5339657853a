"""Amazon Reviews 2023 JSONL records (one user per line with a `history` of reviewed products and an
optional `heldout` review) -> lake frames. Position comes from the review timestamps."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

_REVIEW = """struct<parent_asin:string, rating:double, timestamp_ms:bigint, review_title:string,
  review_full:string, product:struct<title:string, brand:string, price:string, main_category:string>>"""
SCHEMA = f"user_id string, category string, history array<{_REVIEW}>, heldout {_REVIEW}"


def read_reviews(spark: SparkSession, paths: list[str]) -> tuple[DataFrame, DataFrame]:
    records = spark.read.schema(SCHEMA.replace("\n", " ")).json(paths)
    reviews = records.select(
        "user_id", "category", F.explode(F.concat(F.col("history"), F.array(F.col("heldout")))).alias("r")
    ).where(F.col("r").isNotNull())
    reviews = reviews.select(
        "user_id",
        F.col("r.parent_asin").alias("item_id"),
        F.timestamp_millis(F.col("r.timestamp_ms")).alias("event_ts"),
        F.col("r.rating").alias("rating"),
        F.col("r.review_title").alias("review_title"),
        F.col("r.review_full").alias("review_text"),
        F.col("r.product.title").alias("title"),
        F.coalesce(F.col("r.product.main_category"), F.regexp_replace("category", "_", " ")).alias("category"),
        F.col("r.product.brand").alias("brand"),
        # prices come as "$12.99", "12.99" or null
        F.regexp_extract(F.col("r.product.price"), r"([0-9]+(?:\.[0-9]+)?)", 1).alias("price_text"),
    ).dropDuplicates(["user_id", "item_id", "event_ts"])

    order = Window.partitionBy("user_id").orderBy(F.col("event_ts").asc_nulls_first(), F.col("item_id"))
    interactions = reviews.select(
        "user_id",
        "item_id",
        (F.row_number().over(order) - 1).cast("long").alias("position"),
        "event_ts",
        "rating",
        "review_title",
        "review_text",
    )
    latest = Window.partitionBy("item_id").orderBy(F.col("event_ts").desc_nulls_last())
    items = (
        reviews.withColumn("_n", F.row_number().over(latest))
        .where("_n = 1")
        .select(
            "item_id",
            "title",
            "category",
            "brand",
            F.lit(None).cast("string").alias("description"),
            F.when(F.col("price_text") != "", F.col("price_text").cast("double")).alias("price"),
        )
    )
    return items, interactions
