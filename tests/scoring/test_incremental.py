"""Incremental scoring on a tiny model: unchanged users get the last scored date's rows, the others are
scored, the partition is whole, and the prompts never pass through the driver."""

from __future__ import annotations

import pyarrow as pa
import pytest

from instructrec_batch.lake import Lake
from instructrec_batch.model.base import load_tokenizer
from instructrec_batch.scoring import incremental
from instructrec_batch.scoring import job as scoring_job

from .helpers import prompt_row, prompts_table

DAY1, DAY2 = "2026-11-21", "2026-11-22"
FIELDS = ("rank", "item_id", "score", "model_name", "model_version", "template_id", "scorer", "is_fallback",
          "input_fingerprint")


@pytest.fixture
def scoring_cfg(cfg):
    cfg.scoring.top_k = 4
    cfg.scoring.block_rows = 2
    cfg.scoring.dtype = "fp32"
    return cfg


@pytest.fixture
def two_days(scoring_cfg, tiny_model_dir, ray_local):
    """Day 1 scored in full; day 2's prompts: five users as they were, one with a new history item."""
    tokenizer = load_tokenizer(tiny_model_dir)
    lake = Lake(scoring_cfg.lake)
    day1 = [prompt_row(tokenizer, f"u{i}", n_candidates=6, history=2, offset=i) for i in range(6)]
    day2 = [*day1[:5], prompt_row(tokenizer, "u5", n_candidates=6, history=3, offset=5)]
    lake.write_arrow(prompts_table(day1, DAY1), "prompts", mode="overwrite", partition={"run_date": DAY1})
    lake.write_arrow(prompts_table(day2, DAY2), "prompts", mode="overwrite", partition={"run_date": DAY2})
    scoring_job.run(scoring_cfg, lake, DAY1, str(tiny_model_dir), "tiny", "v1")
    return lake


def _by_user(lake: Lake, run_date: str) -> dict[str, list[tuple]]:
    rows = lake.read_arrow("recommendations", {"run_date": run_date}).to_pylist()
    out: dict[str, list[tuple]] = {}
    for r in sorted(rows, key=lambda r: (r["user_id"], r["rank"])):
        out.setdefault(r["user_id"], []).append(tuple(r[f] for f in FIELDS))
    return out


def test_unchanged_users_get_yesterdays_rows_and_changed_ones_are_rescored(two_days, scoring_cfg, tiny_model_dir):
    lake = two_days
    summary = scoring_job.run(scoring_cfg, lake, DAY2, str(tiny_model_dir), "tiny", "v1", reuse_from=DAY1)
    assert (summary["users_reused"], summary["users_scored"], summary["users"]) == (5, 1, 6)
    day1, day2 = _by_user(lake, DAY1), _by_user(lake, DAY2)
    assert sorted(day2) == [f"u{i}" for i in range(6)], "every user once"
    assert all(len(rows) == 4 for rows in day2.values())
    for user in ("u0", "u1", "u2", "u3", "u4"):
        assert day2[user] == day1[user], f"{user}: exactly yesterday's rows"
    assert day2["u5"] != day1["u5"], "the user with a new history item was scored again"

    # The copied rows are what a full rescore would have written.
    full_date = "2026-11-23"
    lake.write_arrow(lake.read_arrow("prompts", {"run_date": DAY2}).drop(["run_date"]).append_column(
        "run_date", pa.array([full_date] * 6)), "prompts", mode="overwrite", partition={"run_date": full_date})
    scoring_job.run(scoring_cfg, lake, full_date, str(tiny_model_dir), "tiny", "v1")
    assert _by_user(lake, full_date) == day2


def test_a_new_model_version_or_other_settings_rescore_everyone(two_days, scoring_cfg, tiny_model_dir):
    lake = two_days
    summary = scoring_job.run(scoring_cfg, lake, DAY2, str(tiny_model_dir), "tiny", "v2", reuse_from=DAY1)
    assert (summary["users_reused"], summary["users_scored"]) == (0, 6)
    scoring_cfg.scoring.top_k = 3
    summary = scoring_job.run(scoring_cfg, lake, DAY2, str(tiny_model_dir), "tiny", "v1", reuse_from=DAY1)
    assert summary["users_reused"] == 0
    fused = scoring_job.run(scoring_cfg, lake, DAY2, str(tiny_model_dir), "tiny", "v1", reuse_from=DAY2,
                            fusion={"rank_weight": 1.0, "popularity_weight": 0.1, "model_weight": 0.5})
    assert fused["users_reused"] == 0, "other fusion weights read the same prompts differently"


def test_a_crash_while_copying_leaves_the_partition_as_it_was(two_days, scoring_cfg, tiny_model_dir, monkeypatch):
    lake = two_days
    scoring_job.run(scoring_cfg, lake, DAY2, str(tiny_model_dir), "tiny", "v0")  # today's partition, full
    before, version = _by_user(lake, DAY2), lake.version("recommendations")

    def broken_copy(*args, **kwargs):
        yield from incremental.reused_rows(*args, **kwargs)
        raise OSError("disk full while copying")

    monkeypatch.setattr(scoring_job, "reused_rows", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        scoring_job.run(scoring_cfg, lake, DAY2, str(tiny_model_dir), "tiny", "v1", reuse_from=DAY1)
    assert lake.version("recommendations") == version and _by_user(lake, DAY2) == before
    assert not list((lake.root / "_staging").glob("score-*"))


def test_prompts_are_read_by_ray_workers_not_the_driver(two_days, scoring_cfg, tiny_model_dir, monkeypatch):
    """The driver may read two narrow columns (user id, fingerprint) to plan the reuse; the prompts
    themselves go from the Parquet files to the workers."""
    import ray

    lake = two_days

    def no_driver_tables(*args, **kwargs):
        raise AssertionError("the prompts table was handed to Ray from the driver")

    real_read_arrow = Lake.read_arrow

    def narrow_read_arrow(self, key, partition=None, columns=None):
        if key == "prompts":
            assert columns is not None and set(columns) <= {"user_id", "fingerprint"}, columns
        return real_read_arrow(self, key, partition, columns)

    monkeypatch.setattr(ray.data, "from_arrow", no_driver_tables)
    monkeypatch.setattr(ray.data, "from_pandas", no_driver_tables)
    monkeypatch.setattr(Lake, "read_arrow", narrow_read_arrow)
    summary = scoring_job.run(scoring_cfg, lake, DAY2, str(tiny_model_dir), "tiny", "v1", reuse_from=DAY1)
    assert summary["users"] == 6 and summary["users_scored"] == 1


def test_fusion_features_read_follow_the_weights():
    assert incremental.fusion_features_read(None) == ()
    assert incremental.fusion_features_read({"rank_weight": 1.0, "popularity_weight": 0.0, "model_weight": 0.2}) == (
        "candidate_retrieval_ranks",)
    assert incremental.fusion_features_read({"rank_weight": 1.0, "popularity_weight": 0.1, "model_weight": 0.2}) == (
        "candidate_retrieval_ranks", "candidate_popularity")
    assert incremental.fusion_features_read({"rank_weight": 1.0, "similarity_weight": 3.0, "embedding_weight": 2.0}) == (
        "candidate_retrieval_ranks", "candidate_title_similarity", "candidate_embedding_similarity")
