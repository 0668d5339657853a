"""Registry: atomic versions, `latest`, clear errors, merged models that plain transformers loads."""

import json

import pytest
import torch

from instructrec_batch.config import ModelConfig
from instructrec_batch.errors import ModelNotFoundError
from instructrec_batch.model import registry
from instructrec_batch.model.base import load_causal_lm


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_model_dir):
    """A LoRA adapter with non-zero weights (a fresh one is the identity, which would prove nothing)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(load_causal_lm(tiny_model_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(str(out))
    return out


def test_publish_resolve_and_load_merged_with_plain_transformers(tmp_path, tiny_model_dir, adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = ModelConfig(registry_dir=str(tmp_path / "models"), name="games")
    with pytest.raises(ModelNotFoundError, match="nothing"):
        registry.resolve(cfg)
    v1 = registry.publish(cfg, adapter_dir, tiny_model_dir, {"data_versions": {"items": 3}})
    v2 = registry.publish(cfg, adapter_dir, tiny_model_dir, {"data_versions": {"items": 4}})
    assert (v1.version, v2.version) == ("v0001", "v0002")
    assert registry.resolve(cfg).version == "v0002"  # cfg.version defaults to latest
    assert registry.resolve(cfg, version="v0001").card["data_versions"] == {"items": 3}
    assert v2.card["best_template_id"] is None and v2.card["name"] == "games"

    merged = AutoModelForCausalLM.from_pretrained(str(v2.merged_dir)).eval()
    AutoTokenizer.from_pretrained(str(v2.merged_dir))
    with_adapter = PeftModel.from_pretrained(load_causal_lm(tiny_model_dir), str(v2.adapter_dir)).eval()
    ids = torch.tensor([[1, 520, 9531, 198, 49]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, with_adapter(input_ids=ids).logits, atol=1e-4)
        assert not torch.allclose(merged(input_ids=ids).logits, load_causal_lm(tiny_model_dir)(input_ids=ids).logits,
                                  atol=1e-3)


def test_a_crash_while_publishing_leaves_no_version_and_latest_unchanged(tmp_path, tiny_model_dir, adapter_dir,
                                                                         monkeypatch):
    cfg = ModelConfig(registry_dir=str(tmp_path / "models"), name="games")
    registry.publish(cfg, adapter_dir, tiny_model_dir, {})

    def half_written(adapter, base, out):
        (out / "merged").mkdir()
        (out / "merged" / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(registry, "_write_models", half_written)
    with pytest.raises(OSError, match="disk full"):
        registry.publish(cfg, adapter_dir, tiny_model_dir, {})
    folder = tmp_path / "models" / "games"
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "v0001"]  # no temp folder left either
    assert registry.resolve(cfg).version == "v0001"


def test_unknown_versions_are_named_with_what_exists(tmp_path, tiny_model_dir, adapter_dir):
    cfg = ModelConfig(registry_dir=str(tmp_path / "models"), name="games")
    registry.publish(cfg, adapter_dir, tiny_model_dir, {})
    with pytest.raises(ModelNotFoundError, match=r"'v0007'.*games: v0001"):
        registry.resolve(cfg, version="v0007")
    with pytest.raises(ModelNotFoundError, match=r"'other'.*games: v0001"):
        registry.resolve(cfg, name="other")


def test_update_card_sets_fields_atomically_and_protects_identity(tmp_path, tiny_model_dir, adapter_dir):
    cfg = ModelConfig(registry_dir=str(tmp_path / "models"), name="games")
    v = registry.publish(cfg, adapter_dir, tiny_model_dir, {"template_version": "t1"})
    updated = registry.update_card(cfg, "games", "latest", best_template_id="rerank-implicit-3")
    assert updated.card["best_template_id"] == "rerank-implicit-3"
    assert updated.card["template_version"] == "t1"
    on_disk = json.loads((v.path / "model_card.json").read_text())
    assert on_disk["best_template_id"] == "rerank-implicit-3"
    with pytest.raises(ValueError, match="identify"):
        registry.update_card(cfg, "games", v.version, version="v9")
