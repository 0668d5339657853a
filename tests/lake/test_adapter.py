"""Delta I/O on real tables: Spark and delta-rs read the same snapshot; partitions replace atomically."""

import deltalake
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from instructrec_batch.errors import SchemaError

CAND = "run_date string, user_id string, item_id string, retrieval_rank int, retrieval_score double, source string"


def _candidates(spark, run_date, users=("u1", "u2"), n=3):
    rows = [(run_date, u, f"i{k}", k + 1, 1.0 / (k + 1), "popularity") for u in users for k in range(n)]
    return spark.createDataFrame(rows, CAND)


def test_partition_replace_is_idempotent_and_leaves_other_dates(spark, lake):
    lake.replace_partition(_candidates(spark, "2026-11-20"), "candidates", {"run_date": "2026-11-20"})
    lake.replace_partition(_candidates(spark, "2026-11-21"), "candidates", {"run_date": "2026-11-21"})
    before = lake.read("candidates", {"run_date": "2026-11-20"}).collect()
    # rerun of 2026-11-21 with different content: replaced, not appended
    lake.replace_partition(_candidates(spark, "2026-11-21", users=("u9",), n=2), "candidates", {"run_date": "2026-11-21"})
    assert lake.read("candidates").count() == 6 + 2
    assert sorted(lake.read("candidates", {"run_date": "2026-11-20"}).collect()) == sorted(before)
    assert {r.user_id for r in lake.read("candidates", {"run_date": "2026-11-21"}).collect()} == {"u9"}


def test_tables_are_readable_by_deltalake_spark_and_ray(spark, lake, ray_local):
    import ray

    lake.replace_partition(_candidates(spark, "2026-11-20"), "candidates", {"run_date": "2026-11-20"})
    path = lake.path("candidates")
    assert deltalake.DeltaTable(path).to_pyarrow_table().num_rows == 6
    assert ray.data.read_delta(path).count() == 6
    assert lake.read("candidates").count() == 6
    assert lake.read_arrow("candidates", {"run_date": "2026-11-20"}).num_rows == 6


def test_rows_outside_the_partition_are_refused(spark, lake):
    with pytest.raises(Exception, match="outside partition"):
        lake.replace_partition(_candidates(spark, "2026-11-20"), "candidates", {"run_date": "2026-11-21"})


def test_write_arrow_replaces_a_partition(lake):
    schema = lake.spec("candidates").schema
    rows = [dict(run_date="2026-11-20", user_id="u", item_id=f"i{k}", retrieval_rank=k, retrieval_score=0.0, source="x") for k in range(4)]
    for _ in range(2):
        lake.write_arrow(pa.Table.from_pylist(rows, schema=schema), "candidates", mode="overwrite", partition={"run_date": "2026-11-20"})
    assert lake.read_arrow("candidates").num_rows == 4


def test_missing_column_is_named(spark, lake, tmp_path):
    deltalake.write_deltalake(lake.path("items"), pa.table({"item_id": ["a"], "category": ["x"]}))
    with pytest.raises(SchemaError, match=r"table 'items' is missing required column 'title' \(expected string\)"):
        lake.read("items")


def test_wrong_type_is_named(spark, lake):
    table = pa.table({"user_id": ["u"], "item_id": [7], "position": [0]})
    deltalake.write_deltalake(lake.path("interactions"), table)
    # Arrow names the type on the delta-rs path, Spark on the spark-delta path.
    with pytest.raises(SchemaError, match=r"table 'interactions' column 'item_id': expected type string, found (int64|bigint)"):
        lake.read("interactions")


def test_absent_optional_columns_read_as_nulls_and_ints_widen(spark, lake):
    table = pa.table({"user_id": ["u"], "item_id": ["a"], "position": pa.array([3], pa.int32())})
    deltalake.write_deltalake(lake.path("interactions"), table)
    row = lake.read("interactions").first()
    assert row.position == 3 and row.rating is None and row.review_text is None


def test_empty_table_reads_with_its_schema(spark, lake):
    lake.overwrite(spark.createDataFrame([], "user_id string, text string, event_ts timestamp"), "intents")
    frame = lake.read("intents")
    assert frame.count() == 0 and frame.columns == ["user_id", "text", "event_ts"]


def test_spark_frame_with_wrong_type_is_refused_on_write(spark, lake):
    frame = spark.createDataFrame([("a", 1)], "item_id string, title int")
    with pytest.raises(SchemaError, match="column 'title': expected type string, found int"):
        lake.overwrite(frame, "items")


def test_large_partition_is_streamed_not_collected(spark, lake):
    frame = spark.range(200_000).select(
        F.lit("2026-11-20").alias("run_date"), (F.col("id") % 5000).cast("string").alias("user_id"),
        F.col("id").cast("string").alias("item_id"), (F.col("id") % 20).cast("int").alias("retrieval_rank"),
        F.rand(1).alias("retrieval_score"), F.lit("cooccurrence").alias("source"),
    )
    lake.replace_partition(frame, "candidates", {"run_date": "2026-11-20"})
    assert deltalake.DeltaTable(lake.path("candidates")).to_pyarrow_dataset().count_rows() == 200_000
    assert not any((lake.root / "_staging").glob("*")), "staging folders are removed after the commit"
