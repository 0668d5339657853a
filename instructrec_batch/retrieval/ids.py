"""Dense integer codes for user and item ids, used inside the co-occurrence stage.

That stage shuffles, hashes and sorts about 11 million (user, item) rows on the full Games set;
integers make each of those passes cheaper than reviewer and ASIN strings (benchmarks/prompts.py,
README "Spark stages"). Codes follow the ids' own order, so a tie broken by the smaller item code is
broken exactly as the smaller item_id would break it.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def id_codes(frame: DataFrame, column: str) -> DataFrame:
    """id, code (int, 1..n in the ids' sort order) for every distinct non-null value of `column` in `frame`."""
    # One global window: the distinct ids are sorted in a single partition (small next to the rows they key).
    return (frame.select(F.col(column).alias("id")).where(F.col("id").isNotNull()).distinct()
            .withColumn("code", F.row_number().over(Window.orderBy("id")).cast("int")))


def encode(frame: DataFrame, codes: DataFrame, column: str, broadcast: bool = False) -> DataFrame:
    """`frame` with `column` replaced by its code (rows whose id has no code are dropped)."""
    lookup = codes.select(F.col("id").alias("_id"), F.col("code").alias("_code"))
    joined = frame.join(F.broadcast(lookup) if broadcast else lookup, F.col(column) == F.col("_id"))
    return joined.withColumn(column, F.col("_code")).drop("_id", "_code")


def decode(frame: DataFrame, codes: DataFrame, column: str, broadcast: bool = False) -> DataFrame:
    """`frame` with the code in `column` replaced by its id (a null code stays null)."""
    lookup = codes.select(F.col("code").alias("_code"), F.col("id").alias("_id"))
    joined = frame.join(F.broadcast(lookup) if broadcast else lookup, F.col(column) == F.col("_code"), "left")
    return joined.withColumn(column, F.col("_id")).drop("_code", "_id")
