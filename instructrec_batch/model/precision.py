"""Which device to train on and whether bf16 autocast pays off there."""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls beat fp32: CUDA, and CPUs with AMX. Without AMX (AVX512-BF16 alone
    included) bf16 autocast makes training slower. The CPU rule is the scorer's, in one place."""
    from ..scoring.device import cpu_has_native_bf16

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def use_bf16(allowed: bool, device: torch.device) -> bool:
    chosen = allowed and native_bf16(device)
    if allowed and not chosen:
        log.info("bf16 allowed but %s has no native bf16: training in fp32", device)
    return chosen


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast for the forward pass; a no-op context when disabled. Weights and optimizer state
    stay fp32 (LoRA parameters are tiny), only the matmuls run in bf16."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def pick_device(use_gpu: bool) -> torch.device:
    """Ray Train assigns each worker its GPU; outside Ray (single process) take the first one."""
    if not use_gpu:
        return torch.device("cpu")
    try:
        import ray.train.torch

        return ray.train.torch.get_device()
    except Exception:  # not inside a Ray Train worker
        if not torch.cuda.is_available():
            raise RuntimeError("tune.use_gpu is true but torch sees no CUDA device") from None
        return torch.device("cuda", 0)
