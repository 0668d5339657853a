"""LoRA instruction tuning as a readable recipe: set up -> resume -> explicit loop -> save.

One recipe for one process or many: when torch.distributed is initialised (Ray Train's TorchTrainer
does that, see ``launch.py``) the model is wrapped in DDP and each rank reads its own slice of every
batch; rank 0 alone validates, checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import resource
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..config import PrecisionConfig, TuneConfig
from ..progress import Progress
from . import checkpoint
from .base import load_causal_lm, load_tokenizer
from .batching import Encoded, collate, encode_examples, micro_batch_indices
from .device import autocast, choose_precision, model_shapes, pick_device
from .loss import TuneLoss
from .validation import validate_ranking

log = logging.getLogger(__name__)


def total_steps(cfg: TuneConfig, n_train: int, world: int) -> int:
    """Optimizer steps: tune.epochs passes over the data when set, else tune.max_steps."""
    if cfg.epochs is None:
        return cfg.max_steps
    per_step = cfg.batch_size * cfg.grad_accum * world
    return max(1, math.ceil(cfg.epochs * n_train / per_step))


def lr_lambda(warmup: int, total: int):
    """Linear warm-up, then linear decay to zero at the last step."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class TuneRecipe:
    """Life cycle: ``setup()`` loads model, data, optimizer and the last checkpoint; ``train()`` runs
    the loop and returns the run summary (rank 0) after saving the final checkpoint and best adapter."""

    def __init__(self, cfg: TuneConfig, base_dir: str | Path, checkpoint_root: str | Path,
                 train_records: list[dict], val_records: list[dict], precision: PrecisionConfig | None = None):
        self.cfg = cfg
        self.precision_cfg = precision or PrecisionConfig()
        self.base_dir = Path(base_dir)
        self.root = Path(checkpoint_root)
        self.train_records = train_records
        self.val_records = val_records

    # ── set-up ────────────────────────────────────────────────────────────────────────────────
    def setup(self) -> None:
        from peft import LoraConfig, get_peft_model

        cfg = self.cfg
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.is_main = self.rank == 0
        self.device = pick_device("cuda" if cfg.use_gpu else "cpu")
        # bf16 autocast only where it is measured faster for this model on this device and threads.
        self.precision = choose_precision(
            "auto" if cfg.bf16 else "fp32", self.device, *model_shapes(self.base_dir),
            self.precision_cfg.cache_file, self.precision_cfg.bf16_min_speedup)
        self.bf16 = self.precision.dtype == "bf16"
        torch.manual_seed(cfg.seed)  # LoRA init must be identical on every rank

        self.tokenizer = load_tokenizer(self.base_dir)
        self.pad_id = self.tokenizer.pad_token_id
        self.train_data: list[Encoded] = encode_examples(
            self.train_records, self.tokenizer, cfg.max_tokens, cfg.append_eos, cfg.ranking_negatives
        )
        # fp32 master weights; bf16 only inside autocast, so LoRA updates are not lost to rounding.
        base = load_causal_lm(self.base_dir, dtype="fp32", device=str(self.device))
        lora = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules), task_type="CAUSAL_LM",
        )
        self.model = get_peft_model(base, lora)
        self.model.train()
        self.module: torch.nn.Module = TuneLoss(
            self.model, cfg.ranking_weight, cfg.ranking_temperature,
            mask_dtype=torch.bfloat16 if self.bf16 else torch.float32,
        )
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = torch.nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.max_steps = total_steps(cfg, len(self.train_data), self.world)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(min(cfg.warmup_steps, self.max_steps), self.max_steps)
        )
        self.step = 0
        self.state: dict[str, Any] = {"best": None, "history": [], "losses": [], "train_seconds": 0.0}
        self._resume()

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def _resume(self) -> None:
        step_dir = checkpoint.latest_step_dir(self.root) if self.cfg.resume else None
        if step_dir is None:
            return
        saved = checkpoint.load(step_dir)
        params = self._trainable_state()
        missing = set(params) - set(saved["trainable"])
        if missing:
            raise RuntimeError(f"checkpoint {step_dir} lacks {len(missing)} LoRA tensors, e.g. {sorted(missing)[0]}")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved["trainable"][name].to(p.device))
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = {k: v for k, v in saved["state"].items() if k != "step"}
        self.step = saved["state"]["step"]
        best_info = self.root / "best" / "best.json"
        if best_info.exists():  # best/ may be newer than the last step checkpoint
            self.state["best"] = json.loads(best_info.read_text())
        if self.is_main:
            log.info("resumed from %s at step %d of %d", step_dir, self.step, self.max_steps)

    # ── the loop ──────────────────────────────────────────────────────────────────────────────
    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.monotonic()
        earlier_seconds = self.state["train_seconds"]  # spent before a resume
        # The budget counts training steps only: validation of a slow dataset must not eat it before
        # the first step (it is reported separately as validation_seconds).
        budget_s = cfg.time_budget_minutes * 60 if cfg.time_budget_minutes is not None else None
        step_seconds = 0.0
        last_eval_step = self.state["history"][-1]["step"] if self.state["history"] else None
        run_steps, run_tokens, stopped_by_budget = 0, 0, False
        if self.step == 0 and cfg.eval_every and not self.state["history"]:
            # Step 0 is the untuned base model (LoRA's B starts at zero): the card records it on the
            # same validation users, and tuning that never beats it publishes an adapter equal to it.
            self._validate()
            last_eval_step = 0
        # Steps left, and the time budget's end as the other possible finish (validation pauses it).
        progress = Progress("tune", self.max_steps - self.step, "steps", deadline_s=budget_s) if self.is_main else None
        while self.step < self.max_steps:
            if budget_s is not None and self._agree(step_seconds > budget_s):
                stopped_by_budget = True
                log.info("time budget of %.1f min of training reached at step %d: stopping", cfg.time_budget_minutes, self.step)
                break
            step_started = time.monotonic()
            loss, tokens = self._train_step()
            step_seconds += time.monotonic() - step_started
            self.step += 1
            if progress is not None:
                progress.update()
            run_steps += 1
            run_tokens += tokens
            self.state["losses"].append(loss)
            if self.is_main and (self.step % cfg.log_every == 0 or self.step == 1):
                elapsed = time.monotonic() - started
                log.info("step %d/%d loss %.4f lr %.2e %.2f s/step %.0f tok/s", self.step, self.max_steps,
                         loss, self.scheduler.get_last_lr()[0], elapsed / run_steps, run_tokens / elapsed)
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                validation_started = time.monotonic()
                self._validate()
                last_eval_step = self.step
                if progress is not None:
                    progress.extend_deadline(time.monotonic() - validation_started)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                saving_started = time.monotonic()
                self._checkpoint(time.monotonic() - started)
                if progress is not None:
                    progress.extend_deadline(time.monotonic() - saving_started)
        if progress is not None:
            progress.close()
        if last_eval_step != self.step:
            self._validate()
        if self.is_main and self.step == 0:
            log.warning("NOTHING WAS TRAINED: tuning stopped at step 0 (max_steps %d, time budget %s min); the "
                        "published adapter is the untuned base model", self.max_steps, cfg.time_budget_minutes)
        elapsed = time.monotonic() - started
        self._checkpoint(elapsed)
        if self.is_main and self.state["best"] is None:
            # No validation data: the final adapter is the one to publish.
            checkpoint.save_best(self.root, self.model, {"step": self.step, "metrics": None})
        summary = {
            "step": self.step,
            "max_steps": self.max_steps,
            "stopped_by_budget": stopped_by_budget,
            "run_steps": run_steps,
            "run_seconds": elapsed,
            "seconds_per_step": step_seconds / run_steps if run_steps else None,
            "step_seconds": step_seconds,
            "validation_seconds": elapsed - step_seconds,
            "tokens_per_second": run_tokens / elapsed if run_steps else None,
            "peak_rss_mb": peak_rss_mb(),
            "bf16": self.bf16,
            "precision": self.precision.record(),
            "device": str(self.device),
            "world_size": self.world,
            "n_train_examples": len(self.train_data),
            "trainable_params": sum(p.numel() for p in self._trainable_state().values()),
            "total_params": sum(p.numel() for p in self.model.parameters()),
            **self.state,
            "train_seconds": earlier_seconds + elapsed,
        }
        if self.is_main:
            checkpoint.write_json_atomic(self.root / "summary.json", summary)
        self._barrier()
        return summary

    def _train_step(self) -> tuple[float, int]:
        cfg = self.cfg
        # Dropout masks are a function of (seed, step, rank): a resumed run repeats them exactly.
        torch.manual_seed((cfg.seed * 1_000_003 + self.step) * 1009 + self.rank)
        total_loss, tokens = 0.0, 0
        for micro in range(cfg.grad_accum):
            idx = micro_batch_indices(len(self.train_data), self.step, micro, cfg.batch_size,
                                      cfg.grad_accum, self.rank, self.world, cfg.seed)
            batch = {k: v.to(self.device) for k, v in collate([self.train_data[i] for i in idx], self.pad_id).items()}
            tokens += int((batch["blocks"] >= 0).sum()) * self.world
            # Gradients are synchronised across ranks once per optimizer step, not per micro-batch.
            last = micro == cfg.grad_accum - 1
            sync = self.module.no_sync() if self.world > 1 and not last else contextlib.nullcontext()
            with sync:
                with autocast(self.device, self.bf16):
                    loss = self.module(**batch) / cfg.grad_accum
                loss.backward()
            total_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self._trainable_state().values(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss, tokens

    # ── validation and saving (rank 0) ────────────────────────────────────────────────────────
    def _validate(self) -> None:
        if self.is_main and self.val_records:
            metrics = validate_ranking(
                self.model, self.tokenizer, self.val_records, self.device, scorer=self.cfg.validation_scorer,
                bf16=self.bf16, max_users=self.cfg.eval_users, batch_tokens=self.cfg.eval_batch_tokens,
            )
            self.state["history"].append({"step": self.step, **metrics})
            key = self.cfg.best_metric
            if key not in metrics:
                raise ValueError(f"tune.best_metric={key!r} is not a validation metric; have {sorted(metrics)}")
            best = self.state["best"]
            log.info("validation at step %d: %s", self.step,
                     ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "n_users"))
            if best is None or metrics[key] > best["metrics"][key]:
                self.state["best"] = {"step": self.step, "metrics": metrics}
                checkpoint.save_best(self.root, self.model, self.state["best"])
        self._barrier()

    def _checkpoint(self, run_seconds: float) -> None:
        if self.is_main:
            state = {**self.state, "train_seconds": self.state["train_seconds"] + run_seconds}
            checkpoint.save(self.root, self.step, self._trainable_state(), self.optimizer, self.scheduler,
                            state, self.cfg.keep_checkpoints)
        self._barrier()

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision, shared with every rank so that all of them stop at the same step."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if (flag and self.is_main) else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()
