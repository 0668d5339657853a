"""A small versioned model registry on disk (the versioned folders of instructrec_batch/versions.py).

    <registry_dir>/<name>/<version>/adapter/          LoRA adapter (peft format) + tokenizer
    <registry_dir>/<name>/<version>/merged/           base + adapter merged (merge_and_unload) + tokenizer:
                                                      what scoring loads, with plain transformers
    <registry_dir>/<name>/<version>/model_card.json   provenance and validation metrics
    <registry_dir>/<name>/latest                      one line: the version `latest` resolves to
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import versions
from ..config import ModelConfig


CARD = "model_card.json"


@dataclass(frozen=True)
class ModelVersion(versions.Version):
    @property
    def merged_dir(self) -> Path:
        return self.path / "merged"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"


def registry_root(cfg: ModelConfig) -> Path:
    return Path(os.path.expanduser(cfg.registry_dir)).resolve()


def list_versions(cfg: ModelConfig, name: str) -> list[str]:
    """Finished versions of `name`, oldest first (temporary folders are hidden and not listed)."""
    return versions.list_versions(registry_root(cfg), name, CARD)


def list_models(cfg: ModelConfig) -> dict[str, list[str]]:
    return versions.list_names(registry_root(cfg), CARD)


def resolve(cfg: ModelConfig, name: str | None = None, version: str | None = None) -> ModelVersion:
    """A published version: `version` is explicit (v0003) or 'latest'; defaults come from cfg."""
    name = name or cfg.name
    version = version or cfg.version
    found = versions.resolve(registry_root(cfg), name, version, CARD, lambda: _missing(cfg, name, version))
    return ModelVersion(found.name, found.version, found.path, found.card)


def _missing(cfg: ModelConfig, name: str, version: str) -> str:
    models = list_models(cfg)
    have = "; ".join(f"{n}: {', '.join(v) or 'no versions'}" for n, v in models.items()) or "nothing"
    return (f"model {name!r} version {version!r} is not in the registry {registry_root(cfg)} "
            f"(it holds {have}); run `instructrec-batch tune` to publish one")


def publish(cfg: ModelConfig, adapter_dir: str | Path, base_dir: str | Path, card: dict[str, Any],
            name: str | None = None) -> ModelVersion:
    """Merge the adapter into the base model and publish adapter, merged model, tokenizer and card
    as the next version of `name`; `latest` then points at it."""
    name = name or cfg.name
    full_card = {"best_template_id": None, **card}  # best_template_id: set later by the evaluate job
    with versions.publishing(registry_root(cfg), name, CARD, full_card) as (tmp, result):
        _write_models(Path(adapter_dir), Path(base_dir), tmp)
    return resolve(cfg, name, result["version"])


def _write_models(adapter_dir: Path, base_dir: Path, out: Path) -> None:
    import torch
    from peft import PeftModel

    from .base import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(base_dir)
    shutil.copytree(adapter_dir, out / "adapter", ignore=shutil.ignore_patterns("best.json"))
    tokenizer.save_pretrained(out / "adapter")
    # Merge in fp32: merged weights rounded to bf16 would move the scores the adapter was chosen for.
    base = load_causal_lm(base_dir, dtype="fp32")
    with torch.no_grad():
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out / "merged", safe_serialization=True)
    tokenizer.save_pretrained(out / "merged")


def update_card(cfg: ModelConfig, name: str, version: str, /, **fields: Any) -> ModelVersion:
    """Add or replace card fields of a published version (e.g. best_template_id from evaluate).
    The card is rewritten atomically; the model files are never touched."""
    found = versions.update_card(registry_root(cfg), name, version, CARD, lambda: _missing(cfg, name, version), fields)
    return ModelVersion(found.name, found.version, found.path, found.card)


def git_commit(repo_dir: str | Path | None = None) -> str | None:
    """The source commit for the card ('<sha>-dirty' with local changes), or None outside git."""
    cwd = Path(repo_dir) if repo_dir else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha
