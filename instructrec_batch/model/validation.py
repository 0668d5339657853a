"""Validation during tuning: rank each validation user's 1 positive + N negatives with the scorer the
model will be served with, and report the evaluation package's ranking metrics."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..instructions.templates import SCORER_FORMS
from .precision import autocast
from .verbalizer import letter_scores


def likelihood_scores(model, tokenizer, records: Sequence[dict], device: torch.device, bf16: bool,
                      batch_tokens: int = 4096) -> np.ndarray:
    """[n_records, n_candidates] mean log-probability of each candidate title after the prompt, by the
    scoring package's own likelihood scorer (packed shared prefix), so validation measures what is served."""
    from ..scoring.frame import score_records
    from ..scoring.rows import RowPreparer

    preparer = RowPreparer(tokenizer, "likelihood", max_input_tokens=4096, max_title_tokens=32)
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
    return np.stack([r.scores for r in results])


def validate_ranking(model, tokenizer, records: Sequence[dict], device: torch.device, scorer: str = "verbalizer",
                     batch_size: int = 8, bf16: bool = False, max_users: int | None = None,
                     ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """HR@k / NDCG@k / MRR of the validation examples of the scorer's form (1 positive + N negatives)."""
    # Imported here: the metrics module belongs to the evaluation package and pulls torchmetrics.
    from ..evaluation.metrics import ranking_metrics

    form = SCORER_FORMS[scorer]
    rows = [r for r in records if r.get("task_form", "reranking") == form]
    if max_users is not None:
        rows = rows[:max_users]
    if not rows:
        raise ValueError(f"no {form}-form validation examples for the {scorer} scorer")
    if scorer == "verbalizer":
        letters = [list(r["candidate_letters"]) for r in rows]
        target = np.array([ls.index(str(r["answer"]).strip()) if str(r["answer"]).strip() in ls else -1
                           for r, ls in zip(rows, letters)])
        scores = letter_scores(model, tokenizer, [r["prompt"] for r in rows], letters, device, batch_size, bf16)
    else:
        target = np.array([list(r["candidate_item_ids"]).index(r["target_item_id"]) for r in rows])
        scores = likelihood_scores(model, tokenizer, rows, device, bf16)
    metrics = ranking_metrics(scores, target, ks=ks)
    metrics["n_users"] = float(len(rows))
    return metrics
