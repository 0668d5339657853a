"""InstructRec's capabilities end to end through the CLI on the bundled sample: one `nightly` with the
LLM teacher in it (the real bundled model writing preferences that the prompts state, a next date
writing only what changed), reasons on every row, a user with only a stated need ranked as cold start,
and generated top-1 explanations."""

from __future__ import annotations

import json

import pyarrow as pa

from instructrec_batch.ingest import job as ingest_job
from instructrec_batch.lake import Lake
from instructrec_batch.lake.schemas import INTENTS
from instructrec_batch.pipeline.nightly import run_spark_stages
from instructrec_batch.pipeline.runs import latest_runs
from tests.invariants import assert_invariants
from tests.pipeline.conftest import small_config
from tests.reliability.helpers import STACK_MARKERS, config_args, run_cli

D1, D2 = "2026-11-20", "2026-11-21"


def test_nightly_through_the_cli_with_teacher_reasons_cold_start_and_explanations(tmp_path, spark, model_copy,
                                                                                 base_model_dir):
    cfg = small_config(tmp_path, model_copy, users=8, extra=[
        "ingest.sources=[reviews_sample]", f"preferences.model={base_model_dir}", "preferences.in_nightly=true",
        "preferences.max_new_tokens=32", "instructions.inference_template=T2-P2I0-a", "scoring.explain.generate=true",
        "scoring.explain.max_new_tokens=8"])
    lake = Lake(cfg.lake, spark)
    ingest_job.run(spark, lake, cfg)
    seeker = {"user_id": "seeker-1", "text": "a gentle face cream for dry skin", "event_ts": None}
    lake.write_arrow(pa.Table.from_pylist([seeker], schema=INTENTS.schema), "intents", mode="append")

    result = run_cli(["nightly", "--run-date", D1, *config_args(cfg)], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(marker in result.stderr for marker in STACK_MARKERS)
    assert_invariants(lake, D1, cfg.scoring.top_k)  # every row's reason names that user's history or says none
    recommended = lake.read_arrow("recommendations", {"run_date": D1}).to_pylist()
    assert {r["user_id"] for r in recommended if r["cold_start"]} == {"seeker-1"}
    # Explanations: only each model-ranked user's top-1 may carry one (the tiny scoring model's words).
    assert all(r["explanation"] is None for r in recommended if r["rank"] != 1 or r["is_fallback"])

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


def test_a_teacher_that_writes_nothing_usable_leaves_quarantine_rows_not_sentences(tmp_path, spark, model_copy):
    cfg = small_config(tmp_path, model_copy, users=4, extra=[
        "ingest.sources=[reviews_sample]", f"preferences.model={model_copy}", "preferences.max_new_tokens=2"])
    lake = Lake(cfg.lake, spark)
    ingest_job.run(spark, lake, cfg)
    run_spark_stages(cfg, D1, ("preferences",), spark=spark)
    counts = json.loads(latest_runs(lake, D1, "preferences")[-1]["row_counts"])
    assert counts["reviewers"] >= 1 and counts["users_unusable"] == counts["reviewers"] and counts["users_written"] == 0
    rows = lake.read_arrow("quarantine", {"run_date": D1, "stage": "preferences"}).to_pylist()
    assert len(rows) == counts["reviewers"] and all("no usable sentence" in r["reason"] for r in rows)
    assert all(json.loads(r["row_json"])["user_id"] for r in rows)
    assert not lake.exists("preferences") or lake.read_arrow("preferences").num_rows == 0
