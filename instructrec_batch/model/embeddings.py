"""Title embeddings from the base language model: the vectors of the embedding similarity that score
fusion reads (``retrieval/content.py``, ``EmbeddingSimilarity``).

A title's vector is the mean of the base model's hidden states at one layer over the title's tokens.
The model reads a title as words it has seen before, so "Halo 3" sits near "Halo: Reach" and "Gears
of War" where TF-IDF sees no shared term (README, "Two-stage ranking", for what it adds).

Always the base model, never a tuned version: the vectors then stay the same when a new version is
published, and are cached on disk by title (``<model.cache_dir>/title-embeddings``), so a nightly
embeds only the titles it has not seen before (the full Games catalogue's 16,412 distinct titles, once:
370 s on 2 CPU cores, README "Two-stage ranking").
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..config import Config
from ..retrieval.content import EmbeddingSimilarity
from .base import base_model_dir, load_causal_lm, load_tokenizer

log = logging.getLogger(__name__)

# Titles are short (the catalogue's longest is ~60 tokens); a longer one is cut, which keeps a batch
# bounded whatever the catalogue holds.
MAX_TITLE_TOKENS = 48


def embed_titles(titles: Sequence[str], model, tokenizer, layers: Sequence[int], batch_size: int = 64) -> dict[int, np.ndarray]:
    """{layer: [len(titles), hidden] float32}: each title's mean hidden state at that layer (0: the
    token embeddings, the model's number of layers or -1: its last layer), over its real tokens."""
    import torch

    for layer in layers:
        absolute_layer(layer, model.config.num_hidden_layers)
    tokenizer.padding_side = "right"  # the pad token itself: tokenizers.load_tokenizer
    out = {layer: [] for layer in layers}
    # Sorted by length so that a batch pads little; put back in the caller's order at the end.
    order = np.argsort([len(t) for t in titles], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [titles[i] for i in order[start : start + batch_size]]
            encoded = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=MAX_TITLE_TOKENS)
            hidden = model(**encoded, output_hidden_states=True).hidden_states
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            for layer in layers:
                pooled = (hidden[layer].float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[layer].append(pooled.numpy())
    restore = np.argsort(order)
    return {layer: np.concatenate(parts)[restore].astype(np.float32) if parts else np.zeros((0, 0), np.float32)
            for layer, parts in out.items()}


def absolute_layer(layer: int, n_layers: int) -> int:
    """``layer`` as an index of the hidden states (0 .. n_layers), negative ones counted from the end."""
    if not -(n_layers + 1) <= layer <= n_layers:
        raise ValueError(f"instructions.title_embedding_layer={layer}: the base model has hidden states "
                         f"0 .. {n_layers} (or -1 for the last)")
    return layer % (n_layers + 1)


def _cache_path(cfg: Config, model_dir: Path, layer: int) -> Path:
    key = hashlib.sha256(f"{model_dir.resolve()}:{layer}:{MAX_TITLE_TOKENS}".encode()).hexdigest()[:12]
    return Path(cfg.model.cache_dir).expanduser() / "title-embeddings" / f"{cfg.model.base.name}-layer{layer}-{key}.npz"


def _load_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as saved:
            return dict(zip(saved["titles"].tolist(), saved["vectors"]))
    except (OSError, ValueError, KeyError) as error:  # a damaged cache is recomputed, never trusted
        log.warning("title embeddings cache %s unreadable (%s): recomputing", path, error)
        return {}


def _save_cache(path: Path, vectors: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed: a crash never leaves a half-written cache for the next run.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
    os.close(fd)
    try:
        titles = list(vectors)
        np.savez(tmp, titles=np.array(titles, dtype=str), vectors=np.stack([vectors[t] for t in titles]))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def title_vectors(titles: Iterable[str | None], cfg: Config) -> dict[str, np.ndarray]:
    """{title: vector} for every distinct non-empty title, at ``instructions.title_embedding_layer`` of
    the base model; titles already in the disk cache are not embedded again."""
    from transformers import AutoConfig

    wanted = sorted({t for t in titles if t})
    model_dir = base_model_dir(cfg.model)
    # One cache whether the layer is named from the start or the end.
    layer = absolute_layer(cfg.instructions.title_embedding_layer,
                           AutoConfig.from_pretrained(str(model_dir)).num_hidden_layers)
    path = _cache_path(cfg, model_dir, layer)
    cached = _load_cache(path)
    missing = [t for t in wanted if t not in cached]
    if missing:
        started = time.time()
        model, tokenizer = load_causal_lm(model_dir), load_tokenizer(model_dir)
        new = embed_titles(missing, model, tokenizer, [layer])[layer]
        cached.update(zip(missing, new))
        _save_cache(path, cached)
        log.info("title embeddings: %d new titles embedded in %.1f s (%d cached)", len(missing),
                 time.time() - started, len(wanted) - len(missing))
    return {t: cached[t] for t in wanted}


def embedding_similarity(titles: Iterable[str | None], cfg: Config) -> EmbeddingSimilarity:
    """The catalogue's embedding similarity (``retrieval/content.py``) from its titles."""
    vectors = title_vectors(titles, cfg)
    return EmbeddingSimilarity.from_vectors(list(vectors), np.stack(list(vectors.values())) if vectors else None,
                                            cfg.instructions.title_similarity_recent)


def catalogue_embedding(items, cfg: Config) -> EmbeddingSimilarity:
    """``embedding_similarity`` over an items table's titles (a Spark DataFrame: the driver collects
    its one title column, as the prompts stage does for TF-IDF)."""
    return embedding_similarity((r.title for r in items.select("title").toLocalIterator()), cfg)
