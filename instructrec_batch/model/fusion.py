"""Score fusion: the served score of a candidate combines the model's score with the retrieval signal.

    fused = model_weight * z(model_score) + rank_weight * -log(retrieval_rank)
            + popularity_weight * log(popularity + 1e-5) + similarity_weight * title_similarity
            + embedding_weight * embedding_similarity

``z`` standardises the model's scores within one user's candidates (mean 0, standard deviation 1):
mean title log-likelihoods differ in level and spread from user to user (prompt length, history), and
the rank prior does not, so one weight fits all users only on a common scale (measured on validation
users: +2% NDCG@10 over raw scores). ``retrieval_rank`` is the candidate's place in the retrieval
stage's list (1 = first; in the evaluate job's sampled protocol, the retrieval stage's order of the
sampled candidates; a candidate nobody ranked counts as rank ``n + 1``); ``popularity`` is the share
of users who interacted with the item; ``title_similarity`` is the candidate's highest title cosine
with the user's latest items in TF-IDF space, ``embedding_similarity`` the same between the base
language model's title vectors (both ``retrieval/content.py``; 0 where unknown). The weights are
fitted on validation users (``evaluation.fusion.fit_fusion``; the tune job and ``fit-fusion`` command),
stored in the model card under ``fusion``, and applied unchanged by ``score`` and ``evaluate``. Why:
the retriever's order is a strong signal that a 135M model discards when it reranks alone (README,
"Two-stage ranking"); a log-rank prior keeps the head of that order unless the model is confident.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

POPULARITY_FLOOR = 1e-5


@dataclass(frozen=True)
class FusionParams:
    rank_weight: float = 1.0
    popularity_weight: float = 0.0
    model_weight: float = 1.0
    # A card from before title similarity has no such weight: it reads as 0, the fusion it was fitted as.
    similarity_weight: float = 0.0
    # Likewise a card from before embedding similarity: 0.
    embedding_weight: float = 0.0
    # The form the weights were fitted for; a card from before standardisation says "raw".
    model_scale: str = "per_user_z"

    def to_card(self) -> dict:
        return asdict(self)

    @classmethod
    def from_card(cls, card: dict | None) -> "FusionParams | None":
        """The card's ``fusion`` entry (None when the model has no fitted fusion)."""
        if not card:
            return None
        values = {k: v if k == "model_scale" else float(v) for k, v in card.items() if k in cls.__dataclass_fields__}
        return cls(**{"model_scale": "raw", **values})


def needs_model_pass(params: FusionParams | None) -> bool:
    """Whether the served score reads the model's: not when the fusion gives it weight 0 (``fuse`` drops
    the term, so the lists are the same without the pass, and the scoring job skips it)."""
    return params is None or params.model_weight != 0


def rank_feature(ranks: np.ndarray) -> np.ndarray:
    """-log(rank); NaN (not ranked by the retriever) counts as the rank after the last candidate."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return -np.log(np.where(np.isnan(ranks), ranks.shape[-1] + 1, ranks))


def per_user_z(scores: np.ndarray) -> np.ndarray:
    """Scores standardised within each user (the last axis) over the finite entries; padding (NaN) and
    unscored (-inf) entries stay as they are; a user whose scores are all equal gets zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    count = finite.sum(axis=-1, keepdims=True)
    safe = np.where(finite, scores, 0.0)
    mean = safe.sum(axis=-1, keepdims=True) / np.maximum(count, 1)
    var = (np.where(finite, safe - mean, 0.0) ** 2).sum(axis=-1, keepdims=True) / np.maximum(count, 1)
    std = np.sqrt(var)
    z = np.where(std > 0, (safe - mean) / np.where(std > 0, std, 1.0), 0.0)
    return np.where(finite, z, scores)


def popularity_feature(popularity: np.ndarray) -> np.ndarray:
    popularity = np.nan_to_num(np.asarray(popularity, dtype=np.float64), nan=0.0)
    return np.log(np.clip(popularity, 0.0, None) + POPULARITY_FLOOR)


def fuse(model_scores: np.ndarray, ranks: np.ndarray, popularity: np.ndarray, params: FusionParams | None,
         similarity: np.ndarray | None = None, embedding: np.ndarray | None = None) -> np.ndarray:
    """Fused scores, same shape as ``model_scores`` (one user's vector or a [users, candidates] matrix).
    ``params=None`` returns the model's scores unchanged (``scoring.fusion: none``). ``similarity``,
    ``embedding``: title and embedding similarities in the same shape (None or NaN: 0, no content
    evidence)."""
    model_scores = np.asarray(model_scores, dtype=np.float64)
    if params is None:
        return model_scores
    model = per_user_z(model_scores) if params.model_scale == "per_user_z" else model_scores
    # A zero weight drops the term (0 * -inf, an unscored candidate, would be NaN: padding).
    model_term = params.model_weight * model if params.model_weight else np.where(np.isnan(model), np.nan, 0.0)
    fused = model_term + params.rank_weight * rank_feature(ranks) + params.popularity_weight * popularity_feature(popularity)
    for weight, feature in ((params.similarity_weight, similarity), (params.embedding_weight, embedding)):
        if weight and feature is not None:
            fused = fused + weight * np.nan_to_num(np.asarray(feature, dtype=np.float64), nan=0.0)
    return fused


@dataclass(frozen=True)
class Shortlist:
    """Which of a user's retrieved pool (``retrieval.pool_depth`` candidates, in retrieval order) the
    model reranks: the ``keep`` that the content part of ``params`` (everything but the model term)
    ranks first, or the first ``keep`` in retrieval order when there is no fitted fusion. The kept
    candidates keep their pool ranks, so ``fuse`` over them with the same weights orders them as it
    would the whole pool with the rest left out. Why a content shortlist and not the retriever's top
    ``keep``: on the full Games set's validation users the fused NDCG@10 is +1.2 points higher picked
    from 50 than from 20 (README, "Two-stage ranking"), and the model reads at most 20 letters."""

    keep: int
    params: FusionParams | None = None

    def __call__(self, ranks, popularity, similarity, embedding=None) -> list[int]:
        """Positions (ascending, so still in retrieval order) of the kept candidates of one user."""
        n = len(ranks)
        if n <= self.keep:
            return list(range(n))
        if self.params is None:
            return list(range(self.keep))
        content = fuse(np.zeros(n), ranks, popularity, replace(self.params, model_weight=0.0), similarity,
                       None if embedding is None else np.asarray(embedding, dtype=np.float64))
        # Stable: among equal scores the better retrieval rank stays.
        best = np.argsort(-content, kind="stable")[: self.keep]
        return sorted(int(i) for i in best)
