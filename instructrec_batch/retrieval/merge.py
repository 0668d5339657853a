"""Merging ranked lists from several retrievers: weighted reciprocal-rank fusion.

score(u, i) = sum over sources s that ranked i for u of weight_s / (k + rank_s(u, i)). Ranks, not raw
scores, because the sources' scores live on different scales (co-occurrence follow probabilities, SASRec
dot products). k and the weights are measured choices (README, "Retrieval").
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def reciprocal_rank_fusion(ranked: dict[str, DataFrame], k: float, weights: dict[str, float]) -> DataFrame:
    """user_id, item_id, score, source ('a+b': every source that offered the item, in the order of
    `ranked`), and <source>_rank / <source>_score for each source (null where it did not offer it).

    Each frame in `ranked`: user_id, item_id, score, rank_in_source, and optionally reason_item_id (the
    history item behind the candidate), which the result keeps (null where no source named one)."""
    names = list(ranked)
    tagged = None
    for name, frame in ranked.items():
        reason = F.col("reason_item_id") if "reason_item_id" in frame.columns else F.lit(None).cast("string")
        part = frame.select("user_id", "item_id", "score", "rank_in_source", F.lit(name).alias("from"),
                            reason.alias("reason_item_id"))
        tagged = part if tagged is None else tagged.unionByName(part)
    weight = F.create_map(*[x for n in names for x in (F.lit(n), F.lit(float(weights.get(n, 1.0))))])
    contribution = weight[F.col("from")] / (F.lit(float(k)) + F.col("rank_in_source"))
    per_source = []
    for n in names:
        mine = F.col("from") == n
        per_source += [F.max(F.when(mine, F.col("rank_in_source"))).cast("int").alias(f"{n}_rank"),
                       F.max(F.when(mine, F.col("score"))).cast("double").alias(f"{n}_score")]
    # Carried through the one aggregation (a join back to the source frame doubled the stage's time).
    merged = tagged.groupBy("user_id", "item_id").agg(F.sum(contribution).alias("score"), *per_source,
                                                      F.max("reason_item_id").alias("reason_item_id"))
    origins = F.concat_ws("+", *[F.when(F.col(f"{n}_rank").isNotNull(), F.lit(n)) for n in names])
    return merged.withColumn("source", origins)
