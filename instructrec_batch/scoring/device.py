"""Where and in which precision the scorer runs.

bf16 is only a win where the hardware multiplies bf16 in matrix units: CUDA GPUs, and CPUs with AMX
(DESIGN section 5 measured 2.7x over fp32 on such a CPU). AVX512-BF16 alone is not enough: on a Xeon
with it but without AMX, a 2048^2 bf16 torch.matmul ran at 172 GFLOP/s against 350 in fp32 and every
scorer was 0.66x its fp32 speed (benchmarks/scoring.py). So ``auto`` means bf16 on CUDA or AMX, else fp32.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
