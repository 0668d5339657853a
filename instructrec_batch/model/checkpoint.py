"""Resumable training state on disk, written atomically.

Layout of a checkpoint root::

    fingerprint.json        what the checkpoints belong to (config, base model, data); a mismatch
                            means they are from another run and are not resumed
    step-000020/            LoRA weights, optimizer, scheduler, trainer state (step, best, history)
    step-000040/
    best/                   the adapter with the best validation metric (peft format) + best.json
    summary.json            the last run's result, read by the driver after Ray workers finish

Every folder is written under a temporary name and renamed into place, so an interrupted write never
looks like a finished checkpoint. Random state is not stored: the trainer reseeds from (seed, step,
rank) at every step, so a resumed run draws exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..versions import write_json_atomic

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished temporary folder onto `target`; an older `target` is removed first (the old
    one stays readable until the new one is complete)."""
    if target.exists():
        old = target.with_name(f".{target.name}-old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def prepare_root(root: Path, fingerprint: dict, resume: bool) -> None:
    """Make `root` hold checkpoints of this run only: stale ones (other fingerprint, or resume off)
    are removed so they can neither be resumed nor published by mistake."""
    marker = root / "fingerprint.json"
    if root.exists():
        same = marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(fingerprint, default=str))
        if not (resume and same):
            if any(root.iterdir()):
                log.warning("discarding checkpoints in %s (%s)", root, "resume off" if same else "from another run")
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, fingerprint)


def latest_step_dir(root: Path) -> Path | None:
    steps = [(int(m.group(1)), p) for p in root.glob("step-*") if (m := _STEP_DIR.match(p.name))]
    return max(steps)[1] if steps else None


def save(root: Path, step: int, trainable: dict[str, torch.Tensor], optimizer, scheduler,
         state: dict, keep: int) -> Path:
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".step-"))
    torch.save({k: v.detach().cpu() for k, v in trainable.items()}, tmp / "trainable.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    write_json_atomic(tmp / "trainer_state.json", {**state, "step": step})
    target = root / f"step-{step:06d}"
    _replace_dir(tmp, target)
    steps = sorted(p for p in root.glob("step-*") if _STEP_DIR.match(p.name))
    for old in steps[: max(0, len(steps) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load(step_dir: Path) -> dict:
    return {
        "trainable": torch.load(step_dir / "trainable.pt", map_location="cpu"),
        "optimizer": torch.load(step_dir / "optimizer.pt", map_location="cpu"),
        "scheduler": torch.load(step_dir / "scheduler.pt", map_location="cpu"),
        "state": json.loads((step_dir / "trainer_state.json").read_text()),
    }


def save_best(root: Path, peft_model, info: dict) -> Path:
    """The adapter in peft's own format (adapter_config.json + safetensors), loadable by
    PeftModel.from_pretrained, with the step and metrics that made it the best."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".best-"))
    peft_model.save_pretrained(str(tmp))
    write_json_atomic(tmp / "best.json", info)
    target = root / "best"
    _replace_dir(tmp, target)
    return target
