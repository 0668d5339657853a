"""Where and in which precision the scorer runs.

bf16 is only a win where the hardware multiplies bf16 natively: CUDA GPUs, and CPUs with AVX512-BF16 or
AMX (DESIGN section 5 measured 2.7x over fp32 on such a CPU). Elsewhere bf16 is emulated and slower than
fp32, so ``auto`` falls back to fp32.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


@lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    path = Path(cpuinfo)
    if not path.exists():  # not Linux: do not guess
        return False
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            return bool(_BF16_CPU_FLAGS & set(line.split(":", 1)[1].split()))
    return False


def pick_device(requested: str | None = None) -> str:
    """``cuda`` when a GPU is visible to this process (Ray sets CUDA_VISIBLE_DEVICES per actor), else cpu."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(requested: str, device: str) -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for this device; explicit choices pass through."""
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "bf16"
    return "bf16" if cpu_has_native_bf16() else "fp32"
