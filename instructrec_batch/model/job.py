"""The tune job's library side: examples in, a published model version out.

The CLI stage reads the instruction examples from the lake (Spark) and hands pandas frames here; nothing
below knows about Spark or Delta. The Delta versions of the input tables and the template library
version are passed in so the model card can say exactly what the model was trained on.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from ..config import Config, TuneConfig
from .base import base_model_dir
from .batching import as_records
from .launch import launch
from .registry import ModelVersion, git_commit, publish

log = logging.getLogger(__name__)

# Knobs that change how a run is operated, not what it computes: a checkpoint stays resumable when
# only these differ (e.g. a second run with a larger time budget continues the first one).
_OPERATIONAL = {"time_budget_minutes", "checkpoint_every", "keep_checkpoints", "resume", "log_every",
                "checkpoint_dir", "eval_batch_tokens", "fusion_users", "fusion_model_weights", "fusion_min_users",
                "fusion_model_users", "fusion_fallback_model_weight", "fusion_fallback_popularity_weight",
                "fusion_fallback_similarity_weight", "fusion_similarity_weights",
                "fusion_fallback_embedding_weight", "fusion_embedding_weights",
                "fusion_popularity_weights", "fusion_popularity_tolerance"}


def checkpoint_root(cfg: Config) -> Path:
    path = cfg.tune.checkpoint_dir or os.path.join(cfg.model.cache_dir, "tune", cfg.model.name)
    return Path(os.path.expanduser(path)).resolve()


def data_digest(records: list[dict]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(f"{r['prompt']}\0{r['answer']}\0".encode())
    return h.hexdigest()[:16]


def fingerprint(tune: TuneConfig, base_dir: Path, train: list[dict], val: list[dict]) -> dict[str, Any]:
    return {
        "tune": {k: v for k, v in tune.model_dump(mode="json").items() if k not in _OPERATIONAL},
        "base_dir": str(base_dir),
        "train": data_digest(train),
        "val": data_digest(val),
    }


def run(examples_train, examples_val, cfg: Config, data_versions: dict[str, int],
             template_version: str) -> ModelVersion:
    """LoRA-tune the base model on the examples (contract of the instructions stage), keep the
    adapter with the best validation metric, and publish it as the next version of cfg.model.name."""
    train = as_records(examples_train)
    val = as_records(examples_val) if examples_val is not None else []
    base_dir = base_model_dir(cfg.model)
    root = checkpoint_root(cfg)
    log.info("tuning %s on %d examples (%d validation), checkpoints in %s", base_dir.name, len(train), len(val), root)
    summary = launch(cfg.tune, cfg.ray, base_dir, root, train, val, fingerprint(cfg.tune, base_dir, train, val),
                     precision=cfg.precision)
    best = summary["best"]
    if best and best["step"] == 0 and summary["step"] > 0:
        log.warning("no validated step beat the untuned base (step 0, %s %.4f): the published adapter is "
                    "the untuned one; tune longer or change the recipe", cfg.tune.best_metric,
                    best["metrics"][cfg.tune.best_metric])
    card = {
        "base_model": {"name": cfg.model.base.name, "kind": cfg.model.base.kind, "dir": str(base_dir)},
        "data_versions": dict(data_versions),
        "template_version": template_version,
        "config": cfg.model_dump(mode="json"),
        "config_hash": cfg.hash(),
        "git_commit": git_commit(),
        "training": {k: summary[k] for k in (
            "train_seconds", "step", "max_steps", "stopped_by_budget", "seconds_per_step", "tokens_per_second",
            "peak_rss_mb", "bf16", "precision", "device", "world_size", "n_train_examples", "trainable_params", "total_params")}
        | {"n_val_examples": len(val), "final_loss": summary["losses"][-1] if summary["losses"] else None},
        "validation": {
            "metric": cfg.tune.best_metric,
            "best_step": best["step"] if best else None,
            "metrics": best["metrics"] if best else None,
            "history": summary["history"],
        },
    }
    version = publish(cfg.model, root / "best", base_dir, card)
    log.info("published %s %s (%s)", version.name, version.version, version.path)
    return version
