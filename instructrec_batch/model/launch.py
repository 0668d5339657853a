"""Run the tuning recipe in this process (one worker) or as a Ray Train TorchTrainer (several).

Both paths call the same ``train_worker``; only who starts it differs. The driver prepares the
checkpoint root before any worker starts and reads the run summary (written by rank 0) afterwards, so
with several nodes the checkpoint root must be on a filesystem every node sees.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..config import PrecisionConfig, RayConfig, TuneConfig
from . import checkpoint

log = logging.getLogger(__name__)


def train_worker(payload: dict[str, Any]) -> None:
    """Entry point of every worker (and of the single-process run)."""
    from .recipe import TuneRecipe

    logging.basicConfig(level=logging.INFO)  # Ray workers start with no logging configured
    recipe = TuneRecipe(
        TuneConfig.model_validate(payload["tune"]), payload["base_dir"], payload["checkpoint_root"],
        payload["train_records"], payload["val_records"], PrecisionConfig.model_validate(payload.get("precision") or {}),
    )
    recipe.setup()
    recipe.train()


def launch(tune: TuneConfig, ray_cfg: RayConfig, base_dir: Path, checkpoint_root: Path,
           train_records: list[dict], val_records: list[dict], fingerprint: dict,
           precision: PrecisionConfig | None = None) -> dict[str, Any]:
    """Train and return the run summary (see ``TuneRecipe.train``); the best adapter is in
    ``checkpoint_root / "best"``."""
    checkpoint.prepare_root(checkpoint_root, fingerprint, tune.resume)
    (checkpoint_root / "summary.json").unlink(missing_ok=True)
    payload = {
        "tune": tune.model_dump(mode="json"),
        "base_dir": str(base_dir),
        "checkpoint_root": str(checkpoint_root),
        "train_records": train_records,
        "val_records": val_records,
        "precision": (precision or PrecisionConfig()).model_dump(mode="json"),
    }
    if tune.num_workers <= 1:
        train_worker(payload)
    else:
        _run_torch_trainer(payload, tune, ray_cfg, checkpoint_root)
    summary_path = checkpoint_root / "summary.json"
    if not summary_path.exists():
        raise RuntimeError(f"training finished without a summary in {checkpoint_root}")
    return json.loads(summary_path.read_text())


def _run_torch_trainer(payload: dict, tune: TuneConfig, ray_cfg: RayConfig, root: Path) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        ray.init(address=ray_cfg.address, num_cpus=ray_cfg.num_cpus,
                 include_dashboard=ray_cfg.include_dashboard, log_to_driver=True)
    log.info("training with %d Ray Train workers (%s)", tune.num_workers, "GPU" if tune.use_gpu else "CPU")
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=payload,
        scaling_config=ScalingConfig(num_workers=tune.num_workers, use_gpu=tune.use_gpu,
                                     resources_per_worker={"GPU": 1} if tune.use_gpu else {"CPU": 1}),
        # gloo on CPU; nccl where every worker has a GPU.
        torch_config=TorchConfig(backend="nccl" if tune.use_gpu else "gloo"),
        run_config=RunConfig(name="tune", storage_path=str((root / "ray").resolve())),
    )
    trainer.fit()
