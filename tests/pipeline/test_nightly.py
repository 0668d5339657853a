"""The nightly job on real Spark, Ray and Delta: reruns, two dates, failure, --resume and the gates."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest

from instructrec_batch.errors import GateError, StageOrderError
from instructrec_batch.pipeline.nightly import run_nightly, run_score, run_spark_stages
from instructrec_batch.pipeline.runs import latest_runs

D1, D2 = "2026-11-20", "2026-11-21"


def recs(lake, run_date):
    table = lake.read_arrow("recommendations", {"run_date": run_date})
    return sorted((r["user_id"], r["rank"], r["item_id"], round(r["score"], 5)) for r in table.to_pylist())


def assert_invariants(lake, run_date, k):
    """Every recommended item is one of the user's candidates and not in their history; ranks 1..K."""
    rows = lake.read_arrow("recommendations", {"run_date": run_date}).to_pylist()
    prompts = {r["user_id"]: r for r in lake.read_arrow("prompts", {"run_date": run_date}).to_pylist()}
    seen: dict[str, set] = {}
    for r in lake.read_arrow("interactions", columns=["user_id", "item_id"]).to_pylist():
        seen.setdefault(r["user_id"], set()).add(r["item_id"])
    by_user: dict[str, list] = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append(r)
    assert set(by_user) == set(prompts), "every user with a prompt row gets recommendations"
    for user, user_rows in by_user.items():
        ranks = sorted(r["rank"] for r in user_rows)
        n = min(k, len(prompts[user]["candidate_item_ids"]))
        assert ranks == list(range(1, n + 1))
        items = [r["item_id"] for r in user_rows]
        assert len(set(items)) == len(items)
        assert set(items) <= set(prompts[user]["candidate_item_ids"])
        assert not set(items) & seen.get(user, set())


def test_rerun_is_identical_and_dates_are_kept(small_lake, spark, ray_local):
    cfg, lake = small_lake
    run_nightly(cfg, D1, spark=spark)
    first = recs(lake, D1)
    assert first
    assert_invariants(lake, D1, cfg.scoring.top_k)

    run_nightly(cfg, D1, spark=spark)
    assert recs(lake, D1) == first, "a rerun replaces the partition with identical content"

    run_nightly(cfg, D2, spark=spark)
    assert recs(lake, D1) == first and len(recs(lake, D2)) == len(first)
    statuses = [r["status"] for r in latest_runs(lake, D1, "score")]
    assert statuses == ["running", "succeeded", "running", "succeeded"]


def test_failed_score_keeps_previous_output_then_resume_finishes(small_lake, spark, ray_local, model_copy):
    cfg, lake = small_lake
    run_nightly(cfg, D1, spark=spark)
    before = recs(lake, D1)
    prompts_version = lake.version("prompts")

    weights = model_copy / "model.safetensors"
    saved = weights.read_bytes()
    weights.write_bytes(b"not a safetensors file")  # a real failure inside every scoring actor
    with pytest.raises(Exception):
        run_score(cfg, D1)
    assert recs(lake, D1) == before, "the failed run left the previous partition intact"
    outcome = latest_runs(lake, D1, "score")[-1]
    assert outcome["status"] == "failed" and outcome["message"]

    weights.write_bytes(saved)
    run_nightly(cfg, D1, resume=True, spark=spark)
    assert lake.version("prompts") == prompts_version, "--resume did not redo prompts"
    assert [r["status"] for r in latest_runs(lake, D1, "prompts")][-1] == "skipped"
    assert latest_runs(lake, D1, "score")[-1]["status"] == "succeeded"
    assert recs(lake, D1) == before


def test_stage_refuses_to_start_before_its_input_stage(small_lake):
    cfg, lake = small_lake
    with pytest.raises(StageOrderError, match="needs 'prompts' to have succeeded first"):
        run_score(cfg, "2026-01-01")


def test_gate_stops_a_run_whose_input_is_mostly_quarantined(small_lake, spark, ray_local):
    cfg, lake = small_lake
    run_spark_stages(cfg, D1, ("candidates",), spark=spark)
    before = lake.read_arrow("candidates", {"run_date": D1}).num_rows
    from pyspark.sql import functions as F

    items = lake.read("items")
    # blank the title of 90% of the items: their interactions become unknown-item rows too
    lake.overwrite(items.withColumn("title", F.when(F.rand(3) < 0.9, F.lit("")).otherwise(F.col("title"))), "items")
    with pytest.raises(GateError, match="quarantined"):
        run_spark_stages(cfg, D1, ("candidates",), spark=spark)
    assert lake.read_arrow("candidates", {"run_date": D1}).num_rows == before
    failed = latest_runs(lake, D1, "candidates")[-1]
    assert failed["status"] == "failed" and "GateError" in failed["message"]
    quarantine = lake.read_arrow("quarantine", {"run_date": D1, "stage": "candidates"})
    assert pc.sum(pc.equal(quarantine["reason"], "item has no title")).as_py() > 0


def test_runs_table_records_counts_and_versions(small_lake, spark, ray_local):
    cfg, lake = small_lake
    run_nightly(cfg, D1, spark=spark)
    final = {r["stage"]: r for r in lake.read_arrow("runs").to_pylist() if r["status"] == "succeeded"}
    assert set(final) >= {"candidates", "prompts", "score"}
    assert json.loads(final["candidates"]["input_versions"])["interactions"] is not None
    assert json.loads(final["score"]["row_counts"])["users"] > 0
    assert final["score"]["model_version"].endswith("/base")
