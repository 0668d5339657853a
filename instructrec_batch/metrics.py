"""Ranking metrics for leave-one-out evaluation (one relevant item per user).

The numbers come from torchmetrics' retrieval metrics (a well-kept library, also used by others to
check our figures); this module only turns a score matrix into the ranking torchmetrics expects.

Conventions
- ``scores[u, j]``: the score system gave candidate ``j`` of user ``u``; higher is better. ``NaN``
  marks a padding slot (a user with fewer candidates than the widest row): it is not a candidate.
- ``target_index[u]``: the column of the user's held-out item, or ``-1`` when the item is not among the
  user's candidates (the retrieval stage missed it). Such a user counts as a miss: 0 for every metric.
  Averages are always over *all* rows, so a system cannot look better by dropping hard users.
- Ties are broken deterministically and pessimistically: the target ranks *after* every candidate with
  the same score, and other tied candidates keep their column order. A system that gives every
  candidate the same score (a model that always answers "A", a cold item) therefore earns nothing from
  the tie, wherever the protocol happened to place the target.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torchmetrics.functional.retrieval import (
    retrieval_hit_rate,
    retrieval_normalized_dcg,
    retrieval_recall,
    retrieval_reciprocal_rank,
)

DEFAULT_KS = (1, 5, 10)


def strict_ranks(scores: np.ndarray, target_index: np.ndarray) -> np.ndarray:
    """1-based rank of every candidate under the tie rule above (NaN slots get rank 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    n_users, n_cand = scores.shape
    target_index = np.asarray(target_index, dtype=np.int64)
    is_target = np.zeros_like(scores, dtype=bool)
    has = target_index >= 0
    is_target[np.nonzero(has)[0], target_index[has]] = True
    pad = np.isnan(scores)
    # lexsort: last key is primary. Primary: score descending (padding last); then non-target before
    # target; then column index, so the order never depends on the sort algorithm.
    primary = np.where(pad, np.inf, -scores)
    cols = np.broadcast_to(np.arange(n_cand), scores.shape)
    order = np.lexsort((cols, is_target, primary), axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, n_cand + 1)[None, :].repeat(n_users, 0), axis=1)
    ranks[pad] = 0
    return ranks


def ranking_metrics(
    scores: np.ndarray,
    target_index: np.ndarray,
    ks: Iterable[int] = DEFAULT_KS,
    recall: bool = False,
    hit_rate: bool = True,
    ndcg_ks: Iterable[int] | None = None,
) -> dict[str, float]:
    """Mean HR@k, NDCG@k and MRR over every row (and Recall@k when ``recall``).

    ``ks`` sets the cut-offs of HR/Recall and, unless ``ndcg_ks`` is given, of NDCG too. Keys look like
    ``"HR@5"``, ``"NDCG@10"``, ``"MRR"``, ``"Recall@20"``. With one relevant item per user Recall@k
    equals HR@k; the retrieval protocol reports it under the name LlamaRec uses.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [n_users, n_candidates], got shape {scores.shape}")
    target_index = np.asarray(target_index, dtype=np.int64)
    if target_index.shape != (scores.shape[0],):
        raise ValueError(f"target_index must have one entry per user ({scores.shape[0]}), got {target_index.shape}")
    if (target_index >= scores.shape[1]).any():
        raise ValueError("target_index points past the last candidate column")
    ks = tuple(int(k) for k in ks)
    ndcg_ks = tuple(int(k) for k in ndcg_ks) if ndcg_ks is not None else ks
    if scores.shape[0] == 0:
        raise ValueError("no users to evaluate")
    has = target_index >= 0
    if np.isnan(scores[np.nonzero(has)[0], target_index[has]]).any():
        raise ValueError("a target column holds NaN (padding): targets must be real candidates")

    # With one relevant item per user, each metric of a user is a function of the target's rank alone
    # (ideal DCG is 1 whatever the list length). So torchmetrics is asked once per distinct rank, on a
    # canonical query with the target at that rank, and the per-user values are averaged by count:
    # the same numbers as feeding it every user (checked in tests), without its per-query Python loop
    # (~40 s for 50k users x 7 metrics on this CPU, against milliseconds).
    ranks = target_ranks(scores, target_index)
    values, counts = np.unique(ranks, return_counts=True)
    n_users = len(ranks)
    n_cand = scores.shape[1]

    metrics: dict[str, object] = {}
    for k in ks:
        if hit_rate:
            metrics[f"HR@{k}"] = lambda p, t, k=k: retrieval_hit_rate(p, t, top_k=k)
        if recall:
            metrics[f"Recall@{k}"] = lambda p, t, k=k: retrieval_recall(p, t, top_k=k)
    for k in ndcg_ks:
        metrics[f"NDCG@{k}"] = lambda p, t, k=k: retrieval_normalized_dcg(p, t, top_k=k)
    metrics["MRR"] = retrieval_reciprocal_rank

    # The canonical query: strictly decreasing positive preds (torchmetrics' MRR reads preds <= 0 as
    # "not retrieved"), the target at position rank-1; rank 0 (a miss) scores 0 for every metric.
    preds = torch.arange(n_cand, 0, -1, dtype=torch.float64)
    out: dict[str, float] = {}
    for name, fn in metrics.items():
        total = 0.0
        for rank, count in zip(values.tolist(), counts.tolist()):
            if rank == 0:
                continue
            target = torch.zeros(n_cand, dtype=torch.bool)
            target[rank - 1] = True
            total += float(fn(preds, target)) * count
        out[name] = total / n_users
    return out


def target_ranks(scores: np.ndarray, target_index: np.ndarray) -> np.ndarray:
    """The target's 1-based rank per user (0 when the target is not a candidate): for reports/plots."""
    ranks = strict_ranks(scores, target_index)
    target_index = np.asarray(target_index, dtype=np.int64)
    out = np.zeros(len(target_index), dtype=np.int64)
    has = target_index >= 0
    out[has] = ranks[np.nonzero(has)[0], target_index[has]]
    return out


def per_user_ndcg(scores: np.ndarray, target_index: np.ndarray, k: int = 10) -> np.ndarray:
    """Each user's NDCG@k with one relevant item: 1/log2(rank + 1) when the target ranks in the top k
    (the tie rule of ``strict_ranks``), else 0; its mean equals ``ranking_metrics``' NDCG@k. The per-user
    values are what paired comparisons of two systems need."""
    return ndcg_at_ranks(target_ranks(scores, target_index), k)


def ndcg_at_ranks(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k per user from the target's 1-based rank (0 or NaN: not ranked)."""
    ranks = np.nan_to_num(np.asarray(ranks, dtype=np.float64), nan=0.0)
    hit = (ranks >= 1) & (ranks <= k)
    return np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 1.0) + 1.0), 0.0)
