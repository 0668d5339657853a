"""The recipe on a tiny random Llama: learns, checkpoints, resumes, keeps the best adapter."""

import json

import numpy as np
import pytest
import torch

from instructrec_batch.config import TuneConfig
from instructrec_batch.model import checkpoint
from instructrec_batch.model.base import load_causal_lm
from instructrec_batch.model.batching import as_records
from instructrec_batch.model.recipe import TuneRecipe


def tune_cfg(**kw) -> TuneConfig:
    base = dict(max_steps=6, batch_size=4, grad_accum=2, learning_rate=3e-3, lora_r=4, lora_dropout=0.1,
                warmup_steps=1, eval_every=0, checkpoint_every=3, max_tokens=1024, bf16=False, log_every=1,
                validation_scorer="verbalizer")
    return TuneConfig(**{**base, **kw})


def run(cfg, tiny_model_dir, root, train, val=(), fresh=True):
    if fresh:
        checkpoint.prepare_root(root, {"test": 1}, resume=cfg.resume)
    recipe = TuneRecipe(cfg, tiny_model_dir, root, as_records(train), as_records(val) if len(val) else [])
    recipe.setup()
    return recipe, recipe.train()


def test_loss_decreases_and_best_adapter_reloads_and_merges(learnable_model_dir, tmp_path, train_examples):
    tiny_model_dir = learnable_model_dir
    from peft import PeftModel

    cfg = tune_cfg(max_steps=20, grad_accum=1, eval_every=10, bf16=True, learning_rate=1e-2)  # bf16 if the CPU has it
    # Validating on training users: a random tiny model generalises to nothing, but what it memorised
    # must beat its untuned step 0, so that the kept adapter is a trained one.
    seen = train_examples[train_examples.task_form == "reranking"].head(16)
    recipe, summary = run(cfg, tiny_model_dir, tmp_path / "ckpt", train_examples, seen)
    losses = summary["losses"]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses
    assert [h["step"] for h in summary["history"]] == [0, 10, 20]  # 0: the untuned base
    assert summary["best"]["step"] in (10, 20)
    assert summary["trainable_params"] < 0.1 * summary["total_params"]
    assert summary["seconds_per_step"] > 0 and summary["tokens_per_second"] > 0

    # the kept adapter is the best one; when it is the final one it reproduces the trained model
    best = tmp_path / "ckpt" / "best"
    assert json.loads((best / "best.json").read_text())["step"] == summary["best"]["step"]
    ids = torch.tensor([[1, 520, 9531, 198, 49, 50, 51]])
    recipe.model.eval()
    reloaded = PeftModel.from_pretrained(load_causal_lm(tiny_model_dir), str(best)).eval()
    merged = PeftModel.from_pretrained(load_causal_lm(tiny_model_dir), str(best)).merge_and_unload().eval()
    with torch.no_grad():
        out_reloaded = reloaded(input_ids=ids).logits
        out_merged = merged(input_ids=ids).logits
        if summary["best"]["step"] == 20:
            assert torch.allclose(recipe.model(input_ids=ids).logits, out_reloaded, atol=1e-5)
        assert not torch.allclose(load_causal_lm(tiny_model_dir)(input_ids=ids).logits, out_reloaded, atol=1e-3)
    assert torch.allclose(out_reloaded, out_merged, atol=1e-4)


def test_resume_after_a_crash_continues_the_same_run(tiny_model_dir, tmp_path, train_examples, monkeypatch):
    cfg = tune_cfg()
    _, uninterrupted = run(cfg, tiny_model_dir, tmp_path / "a", train_examples)

    original = TuneRecipe._train_step

    def crash_at_step_4(self):
        if self.step == 4:
            raise KeyboardInterrupt("simulated interruption")
        return original(self)

    monkeypatch.setattr(TuneRecipe, "_train_step", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tiny_model_dir, tmp_path / "b", train_examples)
    monkeypatch.setattr(TuneRecipe, "_train_step", original)
    assert checkpoint.latest_step_dir(tmp_path / "b").name == "step-000003"

    recipe, resumed = run(cfg, tiny_model_dir, tmp_path / "b", train_examples, fresh=False)
    assert resumed["run_steps"] == 3 and resumed["step"] == 6  # steps 4-6 only
    # the step counter, the data order, the optimizer and the dropout masks all continue: same losses
    np.testing.assert_allclose(resumed["losses"], uninterrupted["losses"], rtol=1e-4)


def test_time_budget_stops_cleanly_and_still_saves(tiny_model_dir, tmp_path, train_examples):
    cfg = tune_cfg(max_steps=1000, time_budget_minutes=0.0)
    _, summary = run(cfg, tiny_model_dir, tmp_path / "c", train_examples)
    assert summary["stopped_by_budget"] and summary["step"] < 1000
    assert (tmp_path / "c" / "best" / "adapter_config.json").exists()
    assert checkpoint.latest_step_dir(tmp_path / "c") is not None
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["step"] == summary["step"]


def test_checkpoints_of_another_run_are_not_resumed(tmp_path):
    root = tmp_path / "r"
    checkpoint.prepare_root(root, {"run": 1}, resume=True)
    (root / "step-000003").mkdir()
    checkpoint.prepare_root(root, {"run": 1}, resume=True)
    assert checkpoint.latest_step_dir(root) is not None
    checkpoint.prepare_root(root, {"run": 2}, resume=True)
    assert checkpoint.latest_step_dir(root) is None


def test_ranking_matching_examples_lifts_the_likelihood_ranking(learnable_model_dir, tmp_path):
    """Matching examples with negatives: the likelihood scorer's validation ranking improves on the
    users it trained on (the target is the title ending in 'Deluxe')."""
    from tests.model.conftest import make_examples

    train = make_examples(learnable_model_dir, 32, seed=6, n_candidates=8, forms=("matching",))
    cfg = tune_cfg(max_steps=16, grad_accum=1, eval_every=16, learning_rate=1e-2, validation_scorer="likelihood",
                   ranking_negatives=7, eval_users=16)
    _, summary = run(cfg, learnable_model_dir, tmp_path / "ckpt", train, train.head(16))
    before, after = (h["NDCG@10"] for h in summary["history"])
    assert after > before + 0.1, summary["history"]
