"""In-process scoring of prompts rows: the core the Ray actor and the evaluation both call.

``score_records`` never raises for one bad row: it returns the row's scores or the reason it could not be
scored (the pipeline quarantines those). ``score_frame`` is the pandas face of it for evaluation, where a
malformed prompt is a bug, so it raises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import ScoringConfig
from ..progress import Progress
from .rows import MalformedRow, PreparedRow, RowPreparer
from .scorers import score_rows

log = logging.getLogger(__name__)


@dataclass
class RowResult:
    record: dict
    row: PreparedRow | None = None
    scores: np.ndarray | None = None
    error: str | None = None


def fallback_scores(n: int) -> np.ndarray:
    """Popularity fallback: the list is already in popularity order, so score n, n-1, ..., 1."""
    return np.arange(n, 0, -1, dtype=np.float64)


def score_records(
    records: Sequence[dict],
    model,
    preparer: RowPreparer,
    batch_tokens: int,
    length_normalize: bool = True,
    model_pass: bool = True,
) -> list[RowResult]:
    """Scores for every record, or the reason it could not be scored. ``model_pass`` False: every
    scorable row gets zeros without running the model (the served fusion gives the model no weight,
    so its scores could not change a list); rows are still checked, and bad ones still reported."""
    results = [RowResult(record) for record in records]
    to_score: list[RowResult] = []
    prompt_ids = preparer.tokenize_prompts(list(records))
    for result, ids in zip(results, prompt_ids):
        try:
            result.row = preparer(result.record, ids)
        except MalformedRow as exc:
            result.error = str(exc)
            continue
        if result.row.is_fallback:
            result.scores = fallback_scores(len(result.row.item_ids))
        else:
            to_score.append(result)
    if not model_pass:
        for result in to_score:
            result.scores = np.zeros(len(result.row.item_ids))
        to_score = []
    if to_score:
        pad_id = preparer.tokenizer.pad_token_id
        try:
            _score_into(to_score, model, preparer.scorer, batch_tokens, pad_id, length_normalize)
        except Exception as exc:  # noqa: BLE001 - isolate the row that breaks the batch, score the rest
            log.warning("a scoring batch failed (%s); rescoring its %d rows one by one", exc, len(to_score))
            for result in to_score:
                try:
                    _score_into([result], model, preparer.scorer, batch_tokens, pad_id, length_normalize)
                except Exception as row_exc:  # noqa: BLE001
                    result.error = f"scoring failed: {type(row_exc).__name__}: {row_exc}"
    for result in results:
        if result.scores is not None and not np.all(np.isfinite(result.scores)):
            result.scores, result.error = None, "the model produced non-finite scores"
    return results


def _score_into(results: list[RowResult], model, scorer, batch_tokens, pad_id, length_normalize) -> None:
    scores = score_rows(model, [r.row for r in results], scorer, batch_tokens, pad_id, length_normalize)
    for result, s in zip(results, scores):
        result.scores = s


def rank_candidates(item_ids: Sequence[str], scores: np.ndarray, k: int) -> list[tuple[int, str, float]]:
    """(rank, item_id, score) for the best k: score descending, ties by item_id ascending (deterministic)."""
    order = sorted(range(len(item_ids)), key=lambda i: (-scores[i], item_ids[i]))
    return [(rank, item_ids[i], float(scores[i])) for rank, i in enumerate(order[:k], start=1)]


def score_frame(prompts: pd.DataFrame, model, tokenizer, sc: ScoringConfig, scorer: str | None = None,
                label: str = "score", chunk_users: int = 64) -> pd.DataFrame:
    """One row per (user, candidate): user_id, item_id, score, by ``scorer`` (default ``sc.scorer``)
    with the scoring config's budgets. Fallback rows score by list order. Users go through the model
    ``chunk_users`` at a time so that a long pass (evaluation, the fusion fit) reports its progress.
    Raises MalformedRow naming the first user whose row cannot be scored."""
    preparer = RowPreparer(tokenizer, scorer or sc.scorer, sc.max_input_tokens, sc.max_title_tokens)
    records = prompts.to_dict("records")
    users, items, scores = [], [], []
    with Progress(label, len(records), "users", heartbeat=True) as progress:
        for start in range(0, len(records), chunk_users):
            chunk = records[start:start + chunk_users]
            for result in score_records(chunk, model, preparer, sc.batch_tokens, sc.length_normalize):
                if result.error:
                    raise MalformedRow(f"user {result.record.get('user_id')!r}: {result.error}")
                users += [result.row.user_id] * len(result.row.item_ids)
                items += result.row.item_ids
                scores += result.scores.tolist()
            progress.update(len(chunk))
    return pd.DataFrame({"user_id": users, "item_id": items, "score": np.asarray(scores, dtype=np.float64)})


def top_k(scored: pd.DataFrame, k: int) -> pd.DataFrame:
    """The best k items per user: user_id, rank (1..k), item_id, score; same tie-break as rank_candidates."""
    ordered = scored.sort_values(["user_id", "score", "item_id"], ascending=[True, False, True], kind="mergesort")
    ordered = ordered.assign(rank=ordered.groupby("user_id", sort=False).cumcount() + 1)
    best = ordered[ordered["rank"] <= k]
    return best[["user_id", "rank", "item_id", "score"]].reset_index(drop=True)
