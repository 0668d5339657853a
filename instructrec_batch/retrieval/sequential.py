"""The learned sequential retriever: SASRec (retrieval/sasrec.py) fitted on the lake, published as a
registry version, and run for every served user inside Spark.

Registry layout (instructrec_batch/versions.py), beside the language models in model.registry_dir:

    <registry_dir>/<retrieval.sequential.name>/<version>/model.safetensors   SASRec weights
    <registry_dir>/<retrieval.sequential.name>/<version>/items.json          item ids, index 1..n
    <registry_dir>/<retrieval.sequential.name>/<version>/retriever_card.json params, data, holdout, recall

Leave-one-out safety: a fit drops each user's last `fit_holdout` items. The card records it, and a
caller that measures on the k-th item from the end asks for a model with fit_holdout >= k
(`resolve_retriever(..., min_holdout=k)`), so an evaluation never scores with a model that saw its targets.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .. import versions
from ..config import RetrievalConfig, SequentialRetrieverConfig
from ..errors import ModelNotFoundError

log = logging.getLogger(__name__)

CARD = "retriever_card.json"
WEIGHTS = "model.safetensors"
ITEMS = "items.json"
FIT_COMMAND = "instructrec-batch fit-retriever"


@dataclass(frozen=True)
class Retriever(versions.Version):
    """A published sequential retriever: what Spark tasks need to load it (its path) and its card."""

    @property
    def fit_holdout(self) -> int:
        return int(self.card["fit_holdout"])


def sasrec_params(cfg: SequentialRetrieverConfig):
    from .sasrec import SASRecParams

    return SASRecParams(dim=cfg.dim, max_len=cfg.max_len, n_blocks=cfg.n_blocks, n_heads=cfg.n_heads,
                        dropout=cfg.dropout, lr=cfg.lr, batch_size=cfg.batch_size, epochs=cfg.epochs, seed=cfg.seed,
                        loss=cfg.loss)


def _root(registry_dir: str) -> Path:
    return Path(os.path.expanduser(registry_dir)).resolve()


def _missing(registry_dir: str, name: str, version: str) -> str:
    have = versions.list_versions(_root(registry_dir), name, CARD)
    return (f"sequential retriever {name!r} version {version!r} is not in the registry {_root(registry_dir)} "
            f"(it holds {', '.join(have) or 'no versions of it'}); run `{FIT_COMMAND}` to fit and publish one "
            "(or set retrieval.method=cooccurrence)")


def resolve_retriever(registry_dir: str, cfg: SequentialRetrieverConfig, min_holdout: int = 0) -> Retriever:
    """The configured version; `min_holdout`: the caller holds out each user's last k items as targets
    and needs a model that never saw them."""
    found = versions.resolve(_root(registry_dir), cfg.name, cfg.version, CARD,
                             lambda: _missing(registry_dir, cfg.name, cfg.version))
    retriever = Retriever(found.name, found.version, found.path, found.card)
    if retriever.fit_holdout < min_holdout:
        raise ModelNotFoundError(
            f"sequential retriever {found.name}/{found.version} was fitted with fit_holdout={retriever.fit_holdout}, "
            f"so it saw the held-out items this job measures on (it needs >= {min_holdout}); run "
            f"`{FIT_COMMAND} --set retrieval.sequential.fit_holdout={max(min_holdout, 2)}` and use that version"
        )
    return retriever


def retriever_for(cfg: RetrievalConfig, registry_dir: str, min_holdout: int = 0) -> Retriever | None:
    """The published retriever that `cfg.method` needs (None for co-occurrence and ALS)."""
    if cfg.method not in ("sequential", "merged"):
        return None
    return resolve_retriever(registry_dir, cfg.sequential, min_holdout)


# ── fitting (in process: one small model on one machine, GPU when present) ─────────────────────
def held_out_target(sequence: list[str], holdout: int) -> tuple[list[str], str] | None:
    """(input, target) for measuring a model fitted with `holdout`: the nearest item it never saw."""
    if holdout < 1 or len(sequence) < holdout + 1:
        return None
    return sequence[:-holdout], sequence[-holdout]


def training_sequences(sequences: dict[str, list[str]], holdout: int) -> dict[str, list[str]]:
    """Every user's sequence without its last `holdout` items: all that a fit may see."""
    return {u: (s[:-holdout] if holdout else list(s)) for u, s in sequences.items()}


def fit_retriever(sequences: dict[str, list[str]], catalogue: list[str], cfg: SequentialRetrieverConfig) -> dict:
    """Fit on every user's sequence minus its last fit_holdout items and measure recall@10/20/50 on up
    to cfg.validation_users seeded users' nearest held-out item. Returns the model, its index, the
    losses and the card fields."""
    import torch

    from .sasrec import top_items, train_sasrec

    users = sorted(sequences)
    h = cfg.fit_holdout
    seen = training_sequences(sequences, h)
    train = [seen[u] for u in users]
    started = time.time()
    model, index, losses = train_sasrec(train, catalogue, sasrec_params(cfg))
    fit_seconds = time.time() - started
    recall: dict[str, float] = {}
    measured = [p for u in users if (p := held_out_target(sequences[u], h)) is not None]
    if measured and cfg.validation_users:
        rng = np.random.default_rng(cfg.seed)
        pick = rng.choice(len(measured), size=min(cfg.validation_users, len(measured)), replace=False)
        inputs, targets = [measured[i][0] for i in pick], [measured[i][1] for i in pick]
        with torch.no_grad():
            top, _ = top_items(model, index, inputs, 50)
        for k in (10, 20, 50):
            recall[f"recall@{k}"] = float(np.mean([t in row[:k] for t, row in zip(targets, top)]))
        recall["users"] = len(pick)
    card = {
        "kind": "sasrec",
        "params": asdict(sasrec_params(cfg)),
        "fit_holdout": h,
        "users": len(users),
        "items": len(index),
        "losses": [round(x, 5) for x in losses],
        "fit_seconds": round(fit_seconds, 1),
        "validation": recall,
    }
    return {"model": model, "index": index, "card": card}


def publish_retriever(registry_dir: str, cfg: SequentialRetrieverConfig, fitted: dict, extra_card: dict) -> Retriever:
    from safetensors.torch import save_file

    with versions.publishing(_root(registry_dir), cfg.name, CARD, {**fitted["card"], **extra_card}) as (tmp, result):
        state = {k: v.contiguous() for k, v in fitted["model"].state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        (tmp / ITEMS).write_text(json.dumps(fitted["index"].items.tolist()))
    found = versions.resolve(_root(registry_dir), cfg.name, result["version"], CARD,
                             lambda: _missing(registry_dir, cfg.name, result["version"]))
    return Retriever(found.name, found.version, found.path, found.card)


def load_retriever(path: str):
    """(model, index) from a published folder, in eval mode."""
    from safetensors.torch import load_file

    from .sasrec import ItemIndex, SASRec, SASRecParams

    folder = Path(path)
    card = json.loads((folder / CARD).read_text())
    index = ItemIndex(json.loads((folder / ITEMS).read_text()))
    model = SASRec(len(index), SASRecParams(**card["params"]))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.eval(), index


# ── inference for every served user, inside Spark ──────────────────────────────────────────────
_LOADED: dict[str, tuple] = {}  # per Python worker: Spark reuses workers, so a model loads once per worker


def _loaded(path: str):
    if path not in _LOADED:
        import torch

        # Spark runs one task per core; one torch thread each keeps the executor's cores busy, not oversubscribed.
        torch.set_num_threads(1)
        _LOADED[path] = load_retriever(path)
    return _LOADED[path]


def user_histories(indexed: DataFrame, users: DataFrame) -> DataFrame:
    """user_id, items (the user's item ids, oldest first) for the served users with interactions."""
    ordered = F.sort_array(F.collect_list(F.struct("idx", "item_id")))
    return (
        indexed.join(users, "user_id", "left_semi")
        .groupBy("user_id")
        .agg(ordered.alias("h"))
        .select("user_id", F.col("h.item_id").alias("items"))
    )


def sequential_scores(indexed: DataFrame, users: DataFrame, retriever: Retriever, depth: int,
                      batch_users: int = 512) -> DataFrame:
    """user_id, item_id, score, rank_in_source: each served user's `depth` best unseen items.

    Arrow batches of histories go through mapInPandas; each Python worker loads the model once. Users
    without interactions get nothing here (popularity serves them)."""
    path = str(retriever.path)

    def infer(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from .sasrec import top_items

        model, index = _loaded(path)
        for batch in batches:
            histories = [list(h) for h in batch["items"]]
            items, scores = top_items(model, index, histories, depth, batch_users)
            lengths = [len(row) for row in items]
            yield pd.DataFrame({
                "user_id": np.repeat(batch["user_id"].to_numpy(), lengths),
                "item_id": [i for row in items for i in row],
                "score": np.array([s for row in scores for s in row], dtype=np.float64),
                "rank_in_source": np.concatenate([np.arange(1, n + 1) for n in lengths] or [np.array([], int)]).astype(np.int32),
            })

    schema = "user_id string, item_id string, score double, rank_in_source int"
    return user_histories(indexed, users).mapInPandas(infer, schema)
