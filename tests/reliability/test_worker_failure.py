"""A scoring actor SIGKILLed mid-run, on real Spark, Ray and Delta with the real bundled SmolLM2.

What holds and why: Ray restarts a dead actor (ray_remote_args max_restarts = scoring.max_retries) and
re-runs the tasks it had in flight (max_task_retries); scoring is deterministic and output blocks go to
a staging folder that is committed to Delta only after every block is written, so a killed actor costs
time, never rows: every user is scored exactly once. With retries switched off the same kill fails the
run, and because nothing was committed, the previous partition is exactly as it was.
"""

from __future__ import annotations

import pytest

from instructrec_batch.ingest import job as ingest_job
from instructrec_batch.lake import Lake
from instructrec_batch.pipeline.nightly import SPARK_STAGES, run_score, run_spark_stages
from instructrec_batch.pipeline.runs import latest_runs
from tests.invariants import assert_invariants, recs
from tests.pipeline.conftest import small_config

from .helpers import ActorKiller

D = "2026-11-20"
# The real model on few users, in blocks of 2 rows: ~10 blocks, each long enough to be killed mid-run.
USERS = 6


def _config(tmp_path, model_dir, retries: int):
    return small_config(
        tmp_path, model_dir, users=USERS,
        # reuse off: the second run must score again (unchanged users would be copied, no actor to kill)
        extra=["scoring.block_rows=2", f"scoring.max_retries={retries}", "scoring.top_k=5",
               "scoring.reuse_unchanged=false"],
    )


@pytest.fixture
def real_model_lake(tmp_path, spark, base_model_dir):
    cfg = _config(tmp_path, base_model_dir, retries=2)
    lake = Lake(cfg.lake, spark)
    ingest_job.run(spark, lake, cfg)
    run_spark_stages(cfg, D, SPARK_STAGES, spark=spark)
    return cfg, lake


def _kill_during(cfg, lake, run):
    killer = ActorKiller(lake.root / "_staging")
    killer.start()
    try:
        return run(), killer
    finally:
        killer.stop()


def test_killed_actor_is_restarted_and_every_user_is_scored_once(real_model_lake, tmp_path, base_model_dir, ray_local):
    cfg, lake = real_model_lake
    prompts = lake.read_arrow("prompts", {"run_date": D})
    scored_users = {r["user_id"] for r in prompts.to_pylist() if not r["is_fallback"]}
    assert len(scored_users) >= 5, "enough model-scored users for the run to be killed mid-way"

    summary, killer = _kill_during(cfg, lake, lambda: run_score(cfg, D))
    assert killer.killed, "the scoring actor was killed during the run"
    pid, title, staged_at_kill = killer.killed[0]
    assert "ScoringActor" in title and staged_at_kill >= 1
    assert summary["users"] == prompts.num_rows, "every user scored"
    assert_invariants(lake, D, cfg.scoring.top_k)
    rows = lake.read_arrow("recommendations", {"run_date": D}).to_pylist()
    firsts = [r["user_id"] for r in rows if r["rank"] == 1]
    assert sorted(firsts) == sorted(prompts["user_id"].to_pylist()), "each user exactly once"
    assert latest_runs(lake, D, "score")[-1]["status"] == "succeeded"
    killed_run = recs(lake, D)

    # Retries off: the same kill fails the run cleanly and yesterday's partition survives untouched.
    strict = _config(tmp_path, base_model_dir, retries=0)
    version = lake.version("recommendations")
    with pytest.raises(Exception) as failure:
        _kill_during(strict, lake, lambda: run_score(strict, D))
    assert "died" in str(failure.value).lower() or "actor" in str(failure.value).lower(), failure.value
    assert lake.version("recommendations") == version, "nothing was committed"
    assert recs(lake, D) == killed_run
    outcome = latest_runs(lake, D, "score")[-1]
    assert outcome["status"] == "failed" and outcome["message"]
    assert not list((lake.root / "_staging").glob("score-*")), "the failed run's staging folder was removed"
    assert_invariants(lake, D, cfg.scoring.top_k)
