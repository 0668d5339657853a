"""The Ray Data scoring job end to end on a tiny model and a hand-made prompts partition."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from instructrec_batch.lake import Lake
from instructrec_batch.model.base import load_tokenizer
from instructrec_batch.scoring import job as scoring_job

from .helpers import fallback_row, prompt_row, prompts_table

RUN_DATE = "2026-11-22"
K = 5


@pytest.fixture
def scoring_cfg(cfg):
    cfg.scoring.top_k = K
    cfg.scoring.block_rows = 3  # several blocks, so the commit really gathers many actor outputs
    cfg.scoring.dtype = "fp32"
    cfg.scoring.scorer = "verbalizer"  # its letters make the malformed row below malformed
    return cfg


def _recs(lake: Lake, run_date: str = RUN_DATE) -> list[dict]:
    return lake.read_arrow("recommendations", partition={"run_date": run_date}).to_pylist()


def test_scoring_job_writes_top_k_and_quarantines_bad_rows(scoring_cfg, tiny_model_dir, ray_local):
    tokenizer = load_tokenizer(tiny_model_dir)
    lake = Lake(scoring_cfg.lake)
    good = [prompt_row(tokenizer, f"u{i}", n_candidates=6 + (i % 3) * 5, history=1 + i, offset=i) for i in range(6)]
    good.append(prompt_row(tokenizer, "few", n_candidates=3, history=2))  # fewer candidates than K
    fallback = fallback_row("cold", ["p1", "p2", "p3", "p4", "p5", "p6", "p7"])
    malformed = {**good[0], "user_id": "broken", "candidate_letters": ["A", "B"]}
    lake.write_arrow(prompts_table([*good, fallback, malformed], RUN_DATE), "prompts", mode="overwrite", partition={"run_date": RUN_DATE})

    summary = scoring_job.run(scoring_cfg, lake, RUN_DATE, str(tiny_model_dir), "tiny", "v1")

    recs = _recs(lake)
    by_user: dict[str, list[dict]] = {}
    for r in recs:
        by_user.setdefault(r["user_id"], []).append(r)
    candidates = {r["user_id"]: r["candidate_item_ids"] for r in [*good, fallback]}
    assert set(by_user) == set(candidates)  # every good user, and not the broken one
    for user, rows in by_user.items():
        rows.sort(key=lambda r: r["rank"])
        expected_k = min(K, len(candidates[user]))
        assert [r["rank"] for r in rows] == list(range(1, expected_k + 1))
        items = [r["item_id"] for r in rows]
        assert len(set(items)) == len(items)
        assert set(items) <= set(candidates[user])
        assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
        assert {(r["model_name"], r["model_version"], r["scorer"]) for r in rows} == {("tiny", "v1", "verbalizer")}
    assert [r["item_id"] for r in sorted(by_user["cold"], key=lambda r: r["rank"])] == ["p1", "p2", "p3", "p4", "p5"]
    assert all(r["is_fallback"] for r in by_user["cold"]) and not any(r["is_fallback"] for r in by_user["u0"])

    quarantine = lake.read_arrow("quarantine", partition={"run_date": RUN_DATE, "stage": "score"}).to_pylist()
    assert len(quarantine) == 1
    assert quarantine[0]["table_name"] == "prompts" and "candidate_letters" in quarantine[0]["reason"]
    assert json.loads(quarantine[0]["row_json"])["user_id"] == "broken"

    assert summary["users"] == len(candidates) and summary["fallback_users"] == 1
    assert summary["quarantined_rows"] == 1 and summary["prompt_tokens"] > 0
    assert summary["users_per_s"] > 0 and summary["recommendation_rows"] == len(recs)

    # Rerun the same date with the malformed row fixed and one user gone: the partition is replaced
    # (no duplicates, no leftovers) and yesterday's quarantine for this stage is cleared.
    other_date = "2026-11-21"
    lake.write_arrow(prompts_table(good[:2], other_date), "prompts", mode="overwrite", partition={"run_date": other_date})
    lake.write_arrow(prompts_table(good[1:], RUN_DATE), "prompts", mode="overwrite", partition={"run_date": RUN_DATE})
    scoring_job.run(scoring_cfg, lake, other_date, str(tiny_model_dir), "tiny", "v1")
    scoring_job.run(scoring_cfg, lake, RUN_DATE, str(tiny_model_dir), "tiny", "v2")
    rerun = _recs(lake)
    assert {r["user_id"] for r in rerun} == {r["user_id"] for r in good[1:]}
    assert len(rerun) == sum(min(K, len(r["candidate_item_ids"])) for r in good[1:])
    assert {r["model_version"] for r in rerun} == {"v2"}
    assert len(_recs(lake, other_date)) == 2 * K  # the other date is untouched
    assert lake.read_arrow("quarantine", partition={"run_date": RUN_DATE, "stage": "score"}).num_rows == 0


def test_failed_run_leaves_previous_partition_intact(scoring_cfg, tiny_model_dir, tmp_path, ray_local):
    tokenizer = load_tokenizer(tiny_model_dir)
    lake = Lake(scoring_cfg.lake)
    lake.write_arrow(prompts_table([prompt_row(tokenizer, "u0", 6, 2)], RUN_DATE), "prompts", mode="overwrite", partition={"run_date": RUN_DATE})
    scoring_job.run(scoring_cfg, lake, RUN_DATE, str(tiny_model_dir), "tiny", "v1")
    before = lake.version("recommendations")
    scoring_cfg.scoring.max_retries = 0
    with pytest.raises(Exception):
        scoring_job.run(scoring_cfg, lake, RUN_DATE, str(tmp_path / "no-such-model"), "tiny", "v2")
    assert lake.version("recommendations") == before
    assert {r["model_version"] for r in _recs(lake)} == {"v1"}
    assert not list((lake.root / "_staging").glob("score-*"))  # staging cleaned even on failure
