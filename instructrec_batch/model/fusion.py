"""Score fusion: the served score of a candidate combines the model's score with the retrieval signal.

    fused = model_score + rank_weight * -log(retrieval_rank) + popularity_weight * log(popularity + 1e-5)

``retrieval_rank`` is the candidate's place in the retrieval stage's list (1 = first; a candidate the
retriever did not rank, as in the sampled protocol, counts as rank ``n + 1``); ``popularity`` is the
share of users who interacted with the item. The weights are fitted on validation users by the tune
job (``evaluation.fusion.fit_fusion``), stored in the model card under ``fusion``, and applied unchanged
by ``score`` and ``evaluate``. Why this form: the retriever's order is a strong signal that a 135M
model discards when it reranks alone (README, "Two-stage ranking"); a log-rank prior keeps the head of
that order unless the model is confident, and two weights fit reliably on a few hundred users.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

POPULARITY_FLOOR = 1e-5


@dataclass(frozen=True)
class FusionParams:
    rank_weight: float = 0.0
    popularity_weight: float = 0.0
    model_weight: float = 1.0

    def to_card(self) -> dict:
        return asdict(self)

    @classmethod
    def from_card(cls, card: dict | None) -> "FusionParams | None":
        """The card's ``fusion`` entry (None when the model has no fitted fusion)."""
        if not card:
            return None
        return cls(**{k: float(v) for k, v in card.items() if k in cls.__dataclass_fields__})


def rank_feature(ranks: np.ndarray) -> np.ndarray:
    """-log(rank); NaN (not ranked by the retriever) counts as the rank after the last candidate."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return -np.log(np.where(np.isnan(ranks), ranks.shape[-1] + 1, ranks))


def popularity_feature(popularity: np.ndarray) -> np.ndarray:
    popularity = np.nan_to_num(np.asarray(popularity, dtype=np.float64), nan=0.0)
    return np.log(np.clip(popularity, 0.0, None) + POPULARITY_FLOOR)


def fuse(model_scores: np.ndarray, ranks: np.ndarray, popularity: np.ndarray, params: FusionParams | None) -> np.ndarray:
    """Fused scores, same shape as ``model_scores`` (one user's vector or a [users, candidates] matrix).
    ``params=None`` returns the model's scores unchanged (``scoring.fusion: none``)."""
    model_scores = np.asarray(model_scores, dtype=np.float64)
    if params is None:
        return model_scores
    return (
        params.model_weight * model_scores
        + params.rank_weight * rank_feature(ranks)
        + params.popularity_weight * popularity_feature(popularity)
    )
