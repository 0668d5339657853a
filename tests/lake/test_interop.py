"""One table, two writers: what Spark with the Delta jars writes, delta-rs reads, appends to and
replaces partitions of, and the other way round; deltalake, Ray Data and Spark SQL agree on its rows."""

import deltalake
import pyarrow as pa
import pytest

from instructrec_batch.config import LakeConfig
from instructrec_batch.lake import Lake

CAND = "run_date string, user_id string, item_id string, retrieval_rank int, retrieval_score double, source string"


def _rows(spark, run_date, users, n=3):
    rows = [(run_date, u, f"i{k}", k + 1, 1.0 / (k + 1), "popularity") for u in users for k in range(n)]
    return spark.createDataFrame(rows, CAND)


def _keys(rows):
    return sorted((r["run_date"], r["user_id"], r["item_id"]) for r in rows)


@pytest.mark.parametrize("first,second", [("spark-delta", "delta-rs"), ("delta-rs", "spark-delta")])
def test_each_backend_reads_appends_and_replaces_what_the_other_wrote(spark, tmp_path, ray_local, first, second):
    import ray

    root = str(tmp_path / "lake")
    a = Lake(LakeConfig(root=root, backend=first), spark)
    b = Lake(LakeConfig(root=root, backend=second), spark)
    assert (a.backend, b.backend) == (first, second)
    a.replace_partition(_rows(spark, "2026-11-20", ["u1", "u2"]), "candidates", {"run_date": "2026-11-20"})
    a.replace_partition(_rows(spark, "2026-11-21", ["u1"]), "candidates", {"run_date": "2026-11-21"})
    assert b.read("candidates").count() == 9

    # The second backend replaces one partition and appends a new one; the first reads the result.
    b.replace_partition(_rows(spark, "2026-11-21", ["u7"], n=2), "candidates", {"run_date": "2026-11-21"})
    b.replace_partition(_rows(spark, "2026-11-22", ["u8"], n=1), "candidates", {"run_date": "2026-11-22"})
    schema = a.spec("candidates").schema
    extra = [dict(run_date="2026-11-22", user_id="u9", item_id="i0", retrieval_rank=1, retrieval_score=0.5,
                  source="popularity")]
    b.write_arrow(pa.Table.from_pylist(extra, schema=schema), "candidates", mode="append")
    expected = (
        [("2026-11-20", u, f"i{k}") for u in ("u1", "u2") for k in range(3)]
        + [("2026-11-21", "u7", f"i{k}") for k in range(2)]
        + [("2026-11-22", "u8", "i0"), ("2026-11-22", "u9", "i0")]
    )
    assert _keys(r.asDict() for r in a.read("candidates").collect()) == sorted(expected)

    # Every reader a user has agrees: delta-rs, Ray Data, Spark SQL on the path, and both adapters.
    path = a.path("candidates")
    assert _keys(deltalake.DeltaTable(path).to_pyarrow_table().to_pylist()) == sorted(expected)
    assert _keys(ray.data.read_delta(path).take_all()) == sorted(expected)
    if "spark-delta" in (first, second):
        sql = spark.sql(f"SELECT run_date, user_id, item_id FROM delta.`{path}` WHERE run_date = '2026-11-21'")
        assert _keys(r.asDict() for r in sql.collect()) == [("2026-11-21", "u7", "i0"), ("2026-11-21", "u7", "i1")]
    assert a.read_arrow("candidates", {"run_date": "2026-11-22"}).num_rows == 2
