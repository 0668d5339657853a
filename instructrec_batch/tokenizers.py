"""Loading a tokenizer: the instructions stage counts prompt tokens with it, the model package runs it."""

from __future__ import annotations

import json
from pathlib import Path

# Classes that need nothing but the folder's tokenizer.json: loaded directly, without AutoTokenizer.
_PLAIN_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _tokenizer_class_name(model_dir: str | Path) -> str | None:
    """The class the folder's tokenizer_config.json names (what AutoTokenizer would pick), if any."""
    path = Path(model_dir) / "tokenizer_config.json"
    return json.loads(path.read_text()).get("tokenizer_class") if path.exists() else None


def load_tokenizer(model_dir: str | Path):
    import transformers

    named = _tokenizer_class_name(model_dir)
    # AutoTokenizer instantiates the class that tokenizer_config.json names, but first reads the model
    # config, and that imports torch: ~730 MB in every Spark Python worker that renders prompts, where
    # the class alone takes ~110 MB (tests/instructions/test_tokenizer_load.py). Same class, same files.
    cls = getattr(transformers, named, None) if named in _PLAIN_CLASSES else None
    tokenizer = (cls or transformers.AutoTokenizer).from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
