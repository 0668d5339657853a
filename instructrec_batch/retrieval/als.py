"""Spark MLlib ALS (implicit feedback) as the alternative retriever (`retrieval.method: als`)."""

from __future__ import annotations

from pyspark.ml.feature import IndexToString, StringIndexer
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..config import RetrievalConfig


def als_scores(interactions: DataFrame, users: DataFrame, cfg: RetrievalConfig, n: int) -> DataFrame:
    """user_id, item_id, score: the top n + als_extra items per served user (seen ones included)."""
    # ALS needs integer ids; alphabetical indexing keeps the mapping (and so the factors) deterministic.
    pairs = interactions.groupBy("user_id", "item_id").agg(F.count("*").cast("float").alias("strength"))
    user_ix = StringIndexer(inputCol="user_id", outputCol="u", stringOrderType="alphabetAsc").fit(pairs)
    item_ix = StringIndexer(inputCol="item_id", outputCol="i", stringOrderType="alphabetAsc").fit(pairs)
    data = item_ix.transform(user_ix.transform(pairs)).select(
        F.col("u").cast("int").alias("u"), F.col("i").cast("int").alias("i"), "strength"
    )
    als = ALS(
        rank=cfg.als_rank,
        maxIter=cfg.als_max_iter,
        regParam=cfg.als_reg,
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="strength",
        seed=cfg.seed,
        coldStartStrategy="drop",
    )
    model = als.fit(data)
    # Users without interactions have no factors: they are left to the popularity back-fill.
    served = user_ix.transform(users.join(pairs.select("user_id").distinct(), "user_id")).select(
        F.col("u").cast("int").alias("u"), "user_id"
    )
    recs = model.recommendForUserSubset(served.select("u"), n + cfg.als_extra)
    flat = recs.select("u", F.explode("recommendations").alias("r")).select(
        "u", F.col("r.i").alias("i"), F.col("r.rating").cast("double").alias("score")
    )
    back = IndexToString(inputCol="i", outputCol="item_id", labels=item_ix.labelsArray[0])
    return back.transform(flat).join(served, "u").select("user_id", "item_id", "score")
