"""Where and in which precision a model runs, for scoring and for tuning alike.

bf16 is only a win where the hardware multiplies bf16 in matrix units: CUDA GPUs, and CPUs with AMX
(2.7x over fp32 measured on such a CPU). AVX512-BF16 alone is not enough: on a Xeon with it but without
AMX, a 2048^2 bf16 torch.matmul ran at 172 GFLOP/s against 350 in fp32 and every scorer was 0.66x its
fp32 speed (benchmarks/scoring.py). So ``auto`` means bf16 on CUDA or AMX, else fp32.
"""

from __future__ import annotations

import contextlib
import logging
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)
_BF16_CPU_FLAGS = {"amx_bf16"}


@lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    path = Path(cpuinfo)
    if not path.exists():  # not Linux: do not guess
        return False
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            return bool(_BF16_CPU_FLAGS & set(line.split(":", 1)[1].split()))
    return False


def pick_device(requested: str | None = None) -> torch.device:
    """``cpu`` or ``cuda`` when asked, else cuda when this process sees a GPU (Ray sets
    CUDA_VISIBLE_DEVICES per actor). For cuda inside a Ray Train worker, that worker's own GPU."""
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if not requested.startswith("cuda"):
        return torch.device(requested)
    try:
        import ray.train.torch

        return ray.train.torch.get_device()
    except Exception:  # not inside a Ray Train worker
        if not torch.cuda.is_available():
            raise RuntimeError("a GPU was asked for but torch sees no CUDA device") from None
        return torch.device(requested if ":" in requested else "cuda:0")


def resolve_dtype(requested: str, device: str | torch.device) -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for this device; explicit choices pass through."""
    if requested != "auto":
        return requested
    if torch.device(device).type == "cuda":
        return "bf16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls beat fp32: CUDA, and CPUs with AMX (the module docstring says why)."""
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
