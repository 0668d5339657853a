"""The non-LLM systems: popularity, the retrieval stage's own order, SASRec. Arrays in, arrays out."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from .protocols import EvalSet, Split
from ..retrieval.sasrec import SASRecParams, sasrec_scores, train_sasrec


def popularity_counts(histories: list[list[str]]) -> pd.Series:
    """item_id -> number of distinct users whose history holds it (held-out items never count)."""
    counts = Counter(item for history in histories for item in set(history))
    return pd.Series(counts, dtype=np.float64)


def popularity_scores(eval_set: EvalSet, popularity: pd.Series) -> np.ndarray:
    """Every user gets the same order: more users first; items nobody had score 0 (a tie)."""
    flat = eval_set.candidates.ravel()
    values = popularity.reindex(pd.Index(flat)).fillna(0.0).to_numpy(dtype=np.float64)
    values[pd.isna(flat)] = np.nan
    return values.reshape(eval_set.candidates.shape)


def retrieval_order_scores(eval_set: EvalSet) -> np.ndarray:
    """The retrieval stage's order as scores: -rank from the set's ``ranks`` (in the retrieval protocol
    column j holds rank j + 1). A sampled set nobody ordered has no retrieval order."""
    if eval_set.ranks is None:
        raise ValueError("these sampled candidates carry no retrieval order (protocols.rank_by_retrieval)")
    scores = -eval_set.ranks.astype(np.float64)
    scores[np.equal(eval_set.candidates, None)] = np.nan
    return scores


def training_sequences(split: Split) -> list[list[str]]:
    """SASRec's training split: each test history minus its last item (the validation item), as in
    the paper's protocol (train on all but the last two, validate on the second to last)."""
    return [h[:-1] for h in split.histories]


def fit_sasrec(split: Split, catalogue, params: SASRecParams):
    return train_sasrec(training_sequences(split), catalogue, params)


def sasrec_eval_scores(model_and_index, split: Split, eval_set: EvalSet) -> np.ndarray:
    """Scores for an eval set's users with their full history (validation item included) as input."""
    model, index = model_and_index
    histories = dict(zip(split.user_ids, split.histories))
    return sasrec_scores(model, index, [histories[u] for u in eval_set.user_ids], eval_set.candidates)
