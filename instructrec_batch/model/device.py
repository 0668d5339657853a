"""Where and in which precision a model runs, for scoring and for tuning alike.

``auto`` precision is measured, not looked up: a CPU flag table was wrong on the next CPU (a Xeon with
AVX512-BF16 and no AMX ran bf16 at 0.66x fp32; an EPYC Zen 4 with the same flags at 1.74-1.85x). So
``auto`` times the model's own matmul shapes (hidden x hidden and hidden x intermediate over a few
hundred tokens) in fp32 and bf16 on the device and thread count this process has, and picks bf16 only
when it is at least ``min_speedup`` times faster. The result is cached per host in a small JSON file,
keyed by CPU model, torch version, thread count and shapes. CUDA GPUs multiply bf16 in tensor cores:
bf16 there without timing. An explicit ``fp32``/``bf16`` always wins.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecisionChoice:
    dtype: str  # fp32 | bf16
    how: str  # explicit | cuda | measured | cached
    fp32_ms: float | None = None
    bf16_ms: float | None = None
    key: str | None = None

    def record(self) -> dict:
        """What run summaries and model cards keep."""
        return asdict(self)


def cpu_model() -> str:
    path = Path("/proc/cpuinfo")
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def precision_key(cpu: str, torch_version: str, threads: int, hidden: int, intermediate: int) -> str:
    return f"{cpu}|torch {torch_version}|{threads} threads|{hidden}x{intermediate}"


def matmul_ms(dtype: str, hidden: int, intermediate: int, tokens: int = 256, repeats: int = 5) -> float:
    """Best-of-`repeats` milliseconds of one token block through the model's two matmul shapes."""
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, hidden, generator=gen).to(dt)
    square = torch.randn(hidden, hidden, generator=gen).to(dt)
    wide = torch.randn(hidden, intermediate, generator=gen).to(dt)
    best = float("inf")
    with torch.no_grad():
        for i in range(repeats + 1):
            started = time.perf_counter()
            (x @ square).sum()
            (x @ wide).sum()
            if i:  # the first run warms caches and kernels up
                best = min(best, (time.perf_counter() - started) * 1000)
    return best


def interleaved_best(timer: Callable[[str, int, int], float], hidden: int, intermediate: int,
                     rounds: int = 3) -> tuple[float, float]:
    """Best fp32 and bf16 times over ``rounds`` alternating measurements. The choice is cached for
    good, so one burst of other work must not decide it: a first version timed fp32 then bf16 once,
    and a neighbour's load during the fp32 half cached bf16 (4.1 vs 24.0 ms) on a CPU where bf16 runs
    at 0.66x fp32. Alternating puts any burst on both sides; the best of each is the quiet figure."""
    fp32 = bf16 = float("inf")
    for _ in range(rounds):
        fp32 = min(fp32, timer("fp32", hidden, intermediate))
        bf16 = min(bf16, timer("bf16", hidden, intermediate))
    return fp32, bf16


def pick_faster(fp32_ms: float, bf16_ms: float, min_speedup: float) -> str:
    """bf16 only when it is clearly faster: fp32 time / bf16 time >= min_speedup."""
    return "bf16" if fp32_ms / bf16_ms >= min_speedup else "fp32"


def choose_precision(requested: str, device: str | torch.device, hidden: int, intermediate: int,
                     cache_file: str | Path | None, min_speedup: float,
                     timer: Callable[[str, int, int], float] = matmul_ms) -> PrecisionChoice:
    """``requested`` fp32 | bf16 | auto on ``device`` for a model of these shapes (module docstring)."""
    if requested != "auto":
        return PrecisionChoice(requested, "explicit")
    if torch.device(device).type == "cuda":
        return PrecisionChoice("bf16" if torch.cuda.is_bf16_supported() else "fp32", "cuda")
    key = precision_key(cpu_model(), torch.__version__, torch.get_num_threads(), hidden, intermediate)
    cache = Path(os.path.expanduser(str(cache_file))) if cache_file else None
    known = _read_cache(cache)
    if key in known:
        hit = known[key]
        choice = PrecisionChoice(pick_faster(hit["fp32_ms"], hit["bf16_ms"], min_speedup), "cached",
                                 hit["fp32_ms"], hit["bf16_ms"], key)
    else:
        fp32, bf16 = interleaved_best(timer, hidden, intermediate)
        choice = PrecisionChoice(pick_faster(fp32, bf16, min_speedup), "measured", round(fp32, 3), round(bf16, 3), key)
        if cache is not None:
            _write_cache(cache, {**known, key: {"fp32_ms": choice.fp32_ms, "bf16_ms": choice.bf16_ms}})
    log.info("precision %s (%s): fp32 %.2f ms, bf16 %.2f ms per block, bf16 needs >= %.2fx [%s]", choice.dtype,
             choice.how, choice.fp32_ms, choice.bf16_ms, min_speedup, key)
    return choice


def model_shapes(model_dir: str | Path) -> tuple[int, int]:
    """(hidden, intermediate) from a transformers model folder's config.json."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return int(config["hidden_size"]), int(config.get("intermediate_size") or 4 * config["hidden_size"])


def _read_cache(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # a damaged cache is measured again, not trusted
        return {}


def _write_cache(path: Path, data: dict) -> None:
    from ..versions import write_json_atomic

    try:
        write_json_atomic(path, data)
    except OSError as exc:  # a read-only home still scores; it measures again next time
        log.warning("could not cache the precision choice at %s: %s", path, exc)


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


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast for the forward pass; a no-op context when disabled. Weights and optimizer state
    stay fp32 (LoRA parameters are tiny), only the matmuls run in bf16."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
