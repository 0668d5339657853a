"""Validation during tuning: rank each validation user's 1 positive + N negatives with the scorer the
model will be served with (the serving code itself, ``frame.score_records``), and report the shared
ranking metrics."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..instructions.templates import SCORER_FORMS
from ..metrics import ranking_metrics
from .device import autocast
from .frame import score_records
from .rows import RowPreparer

# Validation prompts come from the tuning examples, already fitted to tune.max_tokens; these limits
# only guard the scorer (a longer prompt or title is a malformed row, reported below).
MAX_INPUT_TOKENS = 4096
MAX_TITLE_TOKENS = 32


def served_scores(model, tokenizer, records: Sequence[dict], scorer: str, device: torch.device, bf16: bool,
                  batch_tokens: int = 4096) -> np.ndarray:
    """[n_records, n_candidates] scores of each record's candidates, in candidate_item_ids order, by
    the served scorer: title log-likelihood (packed shared prefix) or the answer letter's log-prob."""
    preparer = RowPreparer(tokenizer, scorer, max_input_tokens=MAX_INPUT_TOKENS, max_title_tokens=MAX_TITLE_TOKENS)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(device, bf16):
            results = score_records(list(records), model, preparer, batch_tokens, length_normalize=True)
    finally:
        model.train(was_training)
    failed = [r for r in results if r.error]
    if failed:
        raise ValueError(f"validation user {failed[0].record.get('user_id')!r} could not be scored: {failed[0].error}")
    width = max(len(r.scores) for r in results)
    out = np.full((len(results), width), np.nan)
    for i, r in enumerate(results):
        out[i, : len(r.scores)] = r.scores
    return out


def likelihood_scores(model, tokenizer, records: Sequence[dict], device: torch.device, bf16: bool) -> np.ndarray:
    return served_scores(model, tokenizer, records, "likelihood", device, bf16)


def validate_ranking(model, tokenizer, records: Sequence[dict], device: torch.device, scorer: str,
                     bf16: bool = False, max_users: int | None = None, batch_tokens: int = 4096,
                     ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """HR@k / NDCG@k / MRR of the validation examples of the scorer's form (1 positive + N negatives)."""
    form = SCORER_FORMS[scorer]
    rows = [dict(r, is_fallback=False) for r in records if r.get("task_form", "reranking") == form]
    if max_users is not None:
        rows = rows[:max_users]
    if not rows:
        raise ValueError(f"no {form}-form validation examples for the {scorer} scorer")
    # candidate_letters[i] labels candidate_item_ids[i], so both scorers' targets are the target's column.
    target = np.array([list(r["candidate_item_ids"]).index(r["target_item_id"]) for r in rows])
    scores = served_scores(model, tokenizer, rows, scorer, device, bf16, batch_tokens)
    metrics = ranking_metrics(scores, target, ks=ks)
    metrics["n_users"] = float(len(rows))
    return metrics
