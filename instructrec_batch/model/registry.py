"""A small versioned model registry on disk.

    <registry_dir>/<name>/<version>/adapter/          LoRA adapter (peft format) + tokenizer
    <registry_dir>/<name>/<version>/merged/           base + adapter merged (merge_and_unload) + tokenizer:
                                                      what scoring loads, with plain transformers
    <registry_dir>/<name>/<version>/model_card.json   provenance and validation metrics
    <registry_dir>/<name>/latest                      one line: the version `latest` resolves to

A version is assembled in a hidden temporary folder and renamed into place in one step, and ``latest``
is rewritten with os.replace after that, so a crash at any point leaves either no new version or a
complete one; ``latest`` never points at a half-written folder. Versions are v0001, v0002, ...; two
publishers racing for the same number cannot both win the rename, and the loser takes the next one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import ModelNotFoundError
from .checkpoint import write_json_atomic

CARD = "model_card.json"
LATEST = "latest"
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    card: dict[str, Any] = field(compare=False)

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
    folder = registry_root(cfg) / name
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p.name) for p in folder.iterdir() if (m := _VERSION.match(p.name)) and (p / CARD).exists()]
    return [v for _, v in sorted(found)]


def list_models(cfg: ModelConfig) -> dict[str, list[str]]:
    root = registry_root(cfg)
    if not root.is_dir():
        return {}
    return {p.name: list_versions(cfg, p.name) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def resolve(cfg: ModelConfig, name: str | None = None, version: str | None = None) -> ModelVersion:
    """A published version: `version` is explicit (v0003) or 'latest'; defaults come from cfg."""
    name = name or cfg.name
    version = version or cfg.version
    folder = registry_root(cfg) / name
    if version == LATEST:
        pointer = folder / LATEST
        if not pointer.exists():
            raise ModelNotFoundError(_missing(cfg, name, version))
        version = pointer.read_text().strip()
    path = folder / version
    if not _VERSION.match(version) or not (path / CARD).exists():
        raise ModelNotFoundError(_missing(cfg, name, version))
    return ModelVersion(name, version, path, json.loads((path / CARD).read_text()))


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
    folder = registry_root(cfg) / name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".publishing-"))
    try:
        _write_models(Path(adapter_dir), Path(base_dir), tmp)
        full_card = {
            "name": name,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "best_template_id": None,  # set later by the evaluate job through update_card
            **card,
        }
        version = _rename_to_next_version(tmp, folder, full_card)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # `latest` names the newest finished version, so a slower concurrent publisher cannot move it back.
    newest = list_versions(cfg, name)[-1]
    _write_text_atomic(folder / LATEST, newest + "\n")
    return resolve(cfg, name, version)


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


def _rename_to_next_version(tmp: Path, folder: Path, card: dict) -> str:
    for _ in range(100):
        existing = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
        version = f"v{max(existing, default=0) + 1:04d}"
        write_json_atomic(tmp / CARD, {**card, "version": version})
        try:
            tmp.rename(folder / version)  # fails if another publisher took this number first
            return version
        except OSError:
            continue
    raise RuntimeError(f"could not allocate a new version under {folder}")


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def update_card(cfg: ModelConfig, name: str, version: str, /, **fields: Any) -> ModelVersion:
    """Add or replace card fields of a published version (e.g. best_template_id from evaluate).
    The card is rewritten atomically; the model files are never touched."""
    reserved = {"name", "version"} & set(fields)
    if reserved:
        raise ValueError(f"model card fields {sorted(reserved)} identify the version and cannot change")
    current = resolve(cfg, name, version)
    write_json_atomic(current.path / CARD, {**current.card, **fields})
    return resolve(cfg, current.name, current.version)


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
