"""The tune job (model.job.run) end to end on the tiny model: one process, and two Ray Train workers with DDP."""

import pytest

from instructrec_batch.model.registry import resolve
from instructrec_batch.model import job as tune_job


def tiny_cfg(cfg, tiny_model_dir, tmp_path, **tune):
    cfg.model.base.kind = "hf_dir"
    cfg.model.base.path = str(tiny_model_dir)
    cfg.tune = cfg.tune.model_copy(update={
        "max_steps": 4, "batch_size": 2, "eval_every": 2, "checkpoint_every": 2, "eval_users": 4,
        "checkpoint_dir": str(tmp_path / "ckpt"), "max_tokens": 1024, "log_every": 1, **tune,
    })
    return cfg


def test_tune_publishes_a_version_with_a_complete_card(cfg, tiny_model_dir, tmp_path, train_examples,
                                                          val_matching):
    cfg = tiny_cfg(cfg, tiny_model_dir, tmp_path)
    assert cfg.tune.validation_scorer == "likelihood"
    version = tune_job.run(train_examples, val_matching, cfg, data_versions={"items": 2, "interactions": 5},
                       template_version="lib-7")
    assert resolve(cfg.model).version == version.version == "v0001"
    card = version.card
    assert card["data_versions"] == {"items": 2, "interactions": 5}
    assert card["template_version"] == "lib-7"
    assert card["base_model"]["dir"] == str(tiny_model_dir)
    assert card["config"]["tune"]["max_steps"] == 4
    assert card["training"]["step"] == 4 and card["training"]["train_seconds"] > 0
    assert [h["step"] for h in card["validation"]["history"]] == [0, 2, 4]  # 0: the untuned base
    assert set(card["validation"]["metrics"]) >= {"HR@1", "HR@5", "NDCG@10", "MRR"}
    assert card["best_template_id"] is None and "git_commit" in card
    assert (version.merged_dir / "model.safetensors").exists()
    assert (version.adapter_dir / "adapter_config.json").exists()


def test_two_ray_train_workers_with_ddp(cfg, tiny_model_dir, tmp_path, train_examples, ray_local):
    cfg = tiny_cfg(cfg, tiny_model_dir, tmp_path, num_workers=2, max_steps=2, eval_every=0, checkpoint_every=1)
    version = tune_job.run(train_examples, None, cfg, data_versions={}, template_version="lib-7")
    training = version.card["training"]
    assert training["world_size"] == 2 and training["step"] == 2
    assert version.card["validation"]["metrics"] is None  # no validation examples: the final adapter
    assert (version.merged_dir / "config.json").exists()
