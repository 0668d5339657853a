"""--resume skips a stage only when everything it reads is unchanged: the bug this guards against is
prompts of one form (matching) being reused after the scorer switched to the other (verbalizer)."""

from instructrec_batch.config import load_config
from instructrec_batch.lake import Lake
from instructrec_batch.pipeline import runs

D = "2026-11-20"


def _succeeded(lake, cfg, stage, model_version=None):
    with runs.record_stage(lake, cfg, D, stage) as run:
        run.model_version = model_version


def test_switching_the_scorer_makes_resume_redo_the_prompts(tmp_path):
    cfg = load_config(overrides=[f"lake.root={tmp_path / 'lake'}", "scoring.scorer=likelihood"])
    lake = Lake(cfg.lake)
    _succeeded(lake, cfg, "prompts", "m/v1")
    assert runs.can_skip(lake, cfg, D, "prompts", "m/v1") is not None
    switched = load_config(overrides=[f"lake.root={tmp_path / 'lake'}", "scoring.scorer=verbalizer"])
    assert runs.stage_config_hash(switched, "prompts") != runs.stage_config_hash(cfg, "prompts")
    assert runs.can_skip(lake, switched, D, "prompts", "m/v1") is None
    assert runs.can_skip(lake, cfg, D, "prompts", "m/v2") is None, "latest now names another model"


def test_stage_hashes_ignore_what_a_stage_never_reads():
    a = load_config(overrides=["scoring.top_k=5", "tune.max_steps=3", "spark.driver_memory=8g"])
    b = load_config(overrides=["scoring.top_k=7", "tune.max_steps=9", "spark.driver_memory=2g"])
    assert runs.stage_config_hash(a, "candidates") == runs.stage_config_hash(b, "candidates")
    assert runs.stage_config_hash(a, "score") != runs.stage_config_hash(b, "score")
    assert "scoring" in runs.stage_sections("prompts") and "retrieval" in runs.stage_sections("candidates")
