"""The LLM teacher end to end: `nightly` through the CLI with the preferences stage, the real bundled
model writing, prompts stating what it wrote, and a next date writing only what changed."""

from __future__ import annotations

import json

from instructrec_batch.ingest import job as ingest_job
from instructrec_batch.lake import Lake
from instructrec_batch.pipeline.nightly import run_spark_stages
from instructrec_batch.pipeline.runs import latest_runs
from tests.invariants import assert_invariants
from tests.pipeline.conftest import small_config
from tests.reliability.helpers import STACK_MARKERS, config_args, run_cli

D1, D2 = "2026-11-20", "2026-11-21"


def test_nightly_with_the_teacher_states_each_reviewers_sentence_and_writes_it_once(tmp_path, spark, model_copy,
                                                                                   base_model_dir):
    cfg = small_config(tmp_path, model_copy, users=8, extra=[
        "ingest.sources=[reviews_sample]", f"preferences.model={base_model_dir}", "preferences.in_nightly=true",
        "preferences.max_new_tokens=32", "instructions.inference_template=T2-P2I0-a"])
    lake = Lake(cfg.lake, spark)
    ingest_job.run(spark, lake, cfg)

    result = run_cli(["nightly", "--run-date", D1, *config_args(cfg)], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(marker in result.stderr for marker in STACK_MARKERS)
    assert_invariants(lake, D1, cfg.scoring.top_k)

    written = lake.read_arrow("preferences", {"run_date": D1}).to_pylist()
    reviewed = {}
    for r in lake.read_arrow("interactions").to_pylist():
        if (r["review_text"] or "").strip():
            reviewed.setdefault(r["user_id"], set()).add(r["item_id"])
    run = latest_runs(lake, D1, "preferences")[-1]
    counts = json.loads(run["row_counts"])
    assert run["status"] == "succeeded" and counts["reviewers"] == len(reviewed)
    assert counts["users_written"] + counts["users_unusable"] == len(reviewed) and counts["users_written"] >= 1
    prompts = {r["user_id"]: r for r in lake.read_arrow("prompts", {"run_date": D1}).to_pylist()}
    for row in written:
        assert row["model"] == str(base_model_dir)
        assert set(row["source_review_ids"]) <= reviewed[row["user_id"]]
        assert "<" not in row["text"] and ">" not in row["text"] and "\n" not in row["text"]
        # The served prompt states the user's taste with exactly that sentence, inside its field.
        assert f"in short <<{row['text']}>>" in prompts[row["user_id"]]["prompt"]

    # The next date: nobody's reviews changed, so the teacher writes nothing and the sentences stay current.
    run_spark_stages(cfg, D2, ("preferences",), spark=spark)
    counts = json.loads(latest_runs(lake, D2, "preferences")[-1]["row_counts"])
    assert counts["users_written"] == 0 and counts["users_current"] == len(reviewed)
