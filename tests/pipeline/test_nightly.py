"""The nightly job on real Spark, Ray and Delta: reruns, two dates, failure, --resume and the gates."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest

from instructrec_batch.errors import GateError, StageOrderError
from instructrec_batch.pipeline.nightly import run_nightly, run_score, run_spark_stages
from instructrec_batch.pipeline.runs import latest_runs
from tests.invariants import assert_invariants, recs

D1, D2 = "2026-11-20", "2026-11-21"


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
