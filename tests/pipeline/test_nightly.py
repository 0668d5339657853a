"""The nightly job on real Spark, Ray and Delta: reruns, two dates, failure, --resume and the gates."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from instructrec_batch.errors import GateError, StageOrderError
from instructrec_batch.lake.schemas import INTERACTIONS
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
    cfg.scoring.reuse_unchanged = False  # a rerun would otherwise copy every unchanged user's rows
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


def test_nightly_on_native_spark_delta_keeps_runs_and_sql(tmp_path, spark, ray_local, model_copy):
    """The cluster path: Spark reads and writes every table with the Delta jars `make setup` fetched."""
    from instructrec_batch.ingest import job as ingest_job
    from instructrec_batch.lake import Lake
    from instructrec_batch.sql import run_sql
    from tests.pipeline.conftest import small_config

    cfg = small_config(tmp_path, model_copy, users=20, extra=["lake.backend=spark-delta"])
    lake = Lake(cfg.lake, spark)
    assert lake.backend == "spark-delta"
    ingest_job.run(spark, lake, cfg)
    run_nightly(cfg, D1, spark=spark)
    run_nightly(cfg, D1, spark=spark)  # a rerun replaces, never duplicates
    assert_invariants(lake, D1, cfg.scoring.top_k)
    final = {r["stage"]: r for r in lake.read_arrow("runs").to_pylist() if r["status"] == "succeeded"}
    assert set(final) >= {"candidates", "prompts", "score"}
    served = run_sql(lake, "SELECT count(DISTINCT user_id) AS users, count(*) AS n FROM latest_recommendations")
    users, n = served.column("users")[0].as_py(), served.column("n")[0].as_py()
    assert users > 0 and n == len(recs(lake, D1))
    native = spark.sql(f"SELECT count(*) AS n FROM delta.`{lake.path('recommendations')}` WHERE run_date = '{D1}'")
    assert native.first()["n"] == n


def test_nightly_with_the_merged_retriever_records_its_version(small_lake, spark, ray_local):
    """Without a retriever the stage names fit-retriever; the demo fits one (publishing SASRec) and then
    finds it; candidates merge it with co-occurrence and name the version."""
    from instructrec_batch.pipeline.demo import ensure_retriever
    from instructrec_batch.retrieval import resolve_retriever

    cfg, lake = small_lake
    cfg = cfg.model_copy(update={"retrieval": cfg.retrieval.model_copy(update={
        "method": "merged", "sequential": cfg.retrieval.sequential.model_copy(update={
            "epochs": 2, "dim": 16, "max_len": 8, "validation_users": 50})})})
    with pytest.raises(Exception, match="fit-retriever"):
        run_spark_stages(cfg, D1, ("candidates",), spark=spark)
    assert ensure_retriever(cfg, spark).endswith("(fitted just now)")
    retriever = resolve_retriever(cfg.model.registry_dir, cfg.retrieval.sequential)
    assert ensure_retriever(cfg, spark) == f"{retriever.name}/{retriever.version} (from the registry)"
    assert retriever.card["data_versions"]["interactions"] is not None and retriever.fit_holdout == 2
    run_nightly(cfg, D1, spark=spark)
    assert_invariants(lake, D1, cfg.scoring.top_k)
    cands = lake.read_arrow("candidates", {"run_date": D1}).to_pandas()
    assert cands["source"].str.contains("sequential").any() and cands["sequential_rank"].notna().any()
    final = {r["stage"]: r for r in lake.read_arrow("runs").to_pylist() if r["status"] == "succeeded"}
    assert final["candidates"]["model_version"] == f"{retriever.name}/{retriever.version}"


def test_next_night_scores_only_the_users_whose_inputs_changed(small_lake, spark, ray_local):
    cfg, lake = small_lake
    run_nightly(cfg, D1, spark=spark)
    prompts = lake.read_arrow("prompts", {"run_date": D1}).to_pylist()
    buyer = next(p for p in prompts if not p["is_fallback"])
    history = lake.read_arrow("interactions").filter(pc.equal(lake.read_arrow("interactions")["user_id"], buyer["user_id"]))
    bought = {"user_id": buyer["user_id"], "item_id": buyer["candidate_item_ids"][0],
              "position": pc.max(history["position"]).as_py() + 1}
    lake.write_arrow(pa.Table.from_pylist([bought], schema=INTERACTIONS.schema), "interactions", mode="append")

    summary = run_nightly(cfg, D2, spark=spark)
    cands = {d: lake.read_arrow("candidates", {"run_date": d}).to_pandas().drop(columns="run_date")
             .sort_values(["user_id", "retrieval_rank"]).reset_index(drop=True) for d in (D1, D2)}
    retrieved = cands[D2].groupby("user_id")["retrieved_date"].first()
    assert retrieved[buyer["user_id"]] == D2, "the user with a new interaction gets a fresh list"
    assert (retrieved.drop(buyer["user_id"]) == D1).all(), "idle users keep the list computed on D1"
    idle = cands[D2]["user_id"] != buyer["user_id"]
    assert cands[D2][idle].reset_index(drop=True).equals(cands[D1][cands[D1]["user_id"] != buyer["user_id"]]
                                                         .reset_index(drop=True))
    candidates_run = [r for r in latest_runs(lake, D2, "candidates") if r["status"] == "succeeded"][-1]
    assert json.loads(candidates_run["row_counts"])["users_retrieved"] == 1
    assert summary["reused_from"] == D1 and summary["users"] == len(prompts)
    assert summary["users_scored"] == 1, "only the buyer's prompt changed"
    assert 0 < summary["users_scored"] < summary["users"] and summary["users_reused"] > 0
    day1, day2 = ({(r["user_id"], r["rank"]): r for r in lake.read_arrow("recommendations", {"run_date": d}).to_pylist()}
                  for d in (D1, D2))
    assert day2[(buyer["user_id"], 1)]["input_fingerprint"] != day1[(buyer["user_id"], 1)]["input_fingerprint"]
    assert_invariants(lake, D2, cfg.scoring.top_k)
    final = [r for r in latest_runs(lake, D2, "score") if r["status"] == "succeeded"][-1]
    assert json.loads(final["row_counts"])["users_reused"] == summary["users_reused"]

    incremental = recs(lake, D2)
    full = cfg.model_copy(update={"scoring": cfg.scoring.model_copy(update={"reuse_unchanged": False})})
    assert run_score(full, D2)["users_reused"] == 0
    assert recs(lake, D2) == incremental, "the copied rows are what a full rescore writes"


def test_a_sample_of_users_is_scored_while_candidates_learn_from_all(small_lake, spark):
    cfg, lake = small_lake
    cfg.nightly.score_users, cfg.nightly.sample_users = "sample", 8
    run_spark_stages(cfg, D1, ("candidates", "prompts"), spark=spark)
    candidates = set(lake.read_arrow("candidates", {"run_date": D1})["user_id"].to_pylist())
    sampled = lake.read_arrow("prompts", {"run_date": D1})["user_id"].to_pylist()
    assert len(sampled) == 8 and set(sampled) < candidates and len(candidates) > 8
    run_spark_stages(cfg, D2, ("candidates", "prompts"), spark=spark)
    assert sorted(lake.read_arrow("prompts", {"run_date": D2})["user_id"].to_pylist()) == sorted(sampled), (
        "the same users every night")


def test_a_user_with_only_a_stated_need_is_ranked_by_the_model_and_every_row_says_why(small_lake, spark, ray_local):
    from instructrec_batch.lake.schemas import INTENTS

    cfg, lake = small_lake
    seeker = {"user_id": "seeker-1", "text": "a racing game for two players", "event_ts": None}
    lake.write_arrow(pa.Table.from_pylist([seeker], schema=INTENTS.schema), "intents", mode="append")
    summary = run_nightly(cfg, D1, spark=spark)
    assert_invariants(lake, D1, cfg.scoring.top_k)
    rows = lake.read_arrow("recommendations", {"run_date": D1}).to_pylist()
    mine = [r for r in rows if r["user_id"] == "seeker-1"]
    assert mine and all(r["cold_start"] and not r["is_fallback"] for r in mine)
    assert summary["cold_start_users"] == 1 and not any(r["cold_start"] for r in rows if r["user_id"] != "seeker-1")
    assert any(r["reason"].startswith("because you bought") for r in rows), "co-occurrence names history items"
