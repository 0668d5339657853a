"""The Ray Data actor: the only place that holds a model inside Ray (one model per actor).

Each actor loads the model once, then turns blocks of prompts rows into one Arrow table of output rows.
Recommendation rows and quarantine rows travel together in that table (``kind`` tells them apart), so
the whole run lands in one staging folder and is split at commit time.
"""

from __future__ import annotations

import json
import logging

import pyarrow as pa

from ..config import ScoringConfig
from ..instructions.fields import NO_REASON
from ..lake.schemas import RECOMMENDATIONS
from ..model.base import load_scoring_model
from ..model.frame import rank_candidates, score_records
from ..model.fusion import FusionParams, fuse, needs_model_pass
from ..model.rows import RowPreparer
from .incremental import input_fingerprint

log = logging.getLogger(__name__)

# One staging stream carries both outputs: recommendation rows (the recommendations contract) and
# quarantine rows, told apart by `kind`, plus what the run summary needs.
STAGING_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # rec | quarantine
        *RECOMMENDATIONS.schema,
        ("n_input_tokens", pa.int64()),  # the user's prompt tokens, for the run's tokens/s
        ("row_json", pa.string()),  # a quarantine row's input; its `reason` says what was wrong
    ]
)


def fused_scores(record: dict, model_scores, params: FusionParams | None):
    """The served scores of one prompts row: the model's, fused with the row's retrieval ranks, item
    popularity, title and embedding similarity when the model card has fitted fusion weights (rows
    without ranks or popularity: model-only; rows written before a similarity existed, or without the
    embedding one: fused without it)."""
    import numpy as np

    n = len(model_scores)

    def column(name):  # the row's per-candidate feature, None where absent or misaligned
        values = record.get(name)
        if values is None or len(values) != n:
            return None
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    ranks, popularity = column("candidate_retrieval_ranks"), column("candidate_popularity")
    if params is None or ranks is None or popularity is None:
        return model_scores
    return fuse(model_scores, ranks, popularity, params, column("candidate_title_similarity"),
                column("candidate_embedding_similarity"))


UNKNOWN_REASON = {"reason_item_id": None, "reason": NO_REASON}


def candidate_reasons(record: dict) -> dict[str, dict]:
    """item id -> its reason columns, from a prompts row (rows written before reasons: none)."""
    ids = record.get("candidate_item_ids") or []
    reason_ids, reasons = record.get("candidate_reason_item_ids"), record.get("candidate_reasons")
    if reason_ids is None or reasons is None or not len(reason_ids) == len(reasons) == len(ids):
        return {}
    return {item: {"reason_item_id": rid, "reason": text or NO_REASON} for item, rid, text in zip(ids, reason_ids, reasons)}


def _title_of(record: dict, item_id: str) -> str | None:
    ids, titles = record.get("candidate_item_ids") or [], record.get("candidate_titles") or []
    return next((t for i, t in zip(ids, titles) if i == item_id), None)


class ScoringActor:
    """Callable class for ``Dataset.map_batches``: pyarrow batch of prompts rows in, staging rows out."""

    def __init__(self, model_dir: str, run_date: str, model_name: str, model_version: str, scoring: dict,
                 fusion: dict | None, device: str, score_key: str = ""):
        """``scoring``: the ScoringConfig as a dict (what travels to Ray workers); ``fusion``: the model
        card's fitted weights or None; ``device``: what the actor reserved (cpu, or cuda with a GPU);
        ``score_key``: how this run reads a prompts row (``incremental.score_key``), stored with the
        row's fingerprint so that a later run can tell whether the user's rows would come out the same.
        ``scoring.dtype`` arrives decided (the job measures ``auto`` once for all actors)."""
        import torch

        sc = ScoringConfig.model_validate(scoring)
        # Match the CPUs Ray reserved for this actor; oversubscribing cores only slows it.
        torch.set_num_threads(max(1, int(sc.num_cpus_per_actor)))
        self.model, tokenizer, self.precision = load_scoring_model(model_dir, sc.dtype, device)
        self.preparer = RowPreparer(tokenizer, sc.scorer, sc.max_input_tokens, sc.max_title_tokens)
        self.constants = {"run_date": run_date, "model_name": model_name, "model_version": model_version, "scorer": sc.scorer}
        self.batch_tokens, self.length_normalize, self.k = sc.batch_tokens, sc.length_normalize, sc.top_k
        self.fusion = FusionParams.from_card(fusion)
        # A fusion that gives the model weight 0 serves the same lists without its pass: the nightly
        # then costs what prompts cost, not a forward pass per user.
        self.model_pass = needs_model_pass(self.fusion)
        self.score_key = score_key
        self.tokenizer, self.explain = tokenizer, sc.explain if sc.explain.generate else None
        log.info("scoring actor ready: %s, scorer=%s, dtype=%s%s", model_dir, sc.scorer, self.precision.dtype,
                 "" if self.model_pass else "; the fusion's model weight is 0: no model pass")

    def __call__(self, batch: pa.Table) -> pa.Table:
        results = score_records(batch.to_pylist(), self.model, self.preparer, self.batch_tokens, self.length_normalize,
                                self.model_pass)
        out: list[dict] = []
        top1: list[tuple[int, str, str | None]] = []  # (row in out, served prompt, top-1 title) to explain
        for result in results:
            if result.error is not None:
                out.append(self._quarantine_row(result.record, result.error))
                continue
            row = result.row
            scores = result.scores if row.is_fallback else fused_scores(result.record, result.scores, self.fusion)
            fingerprint = input_fingerprint(result.record.get("fingerprint"), self.score_key)
            reasons = candidate_reasons(result.record)
            for rank, item_id, score in rank_candidates(row.item_ids, scores, self.k):
                if rank == 1 and self.explain is not None and not row.is_fallback:
                    top1.append((len(out), result.record["prompt"], _title_of(result.record, item_id)))
                out.append(
                    {
                        **self.constants,
                        "kind": "rec",
                        "user_id": row.user_id,
                        "rank": rank,
                        "item_id": item_id,
                        "score": score,
                        "template_id": row.template_id,
                        "is_fallback": row.is_fallback,
                        "cold_start": bool(result.record.get("cold_start")),
                        "input_fingerprint": fingerprint,
                        **reasons.get(item_id, UNKNOWN_REASON),
                        # Fallback users cost no model tokens.
                        "n_input_tokens": row.n_input_tokens if rank == 1 else 0,
                    }
                )
        if top1:
            self._explain(out, top1)
        return pa.Table.from_pylist(out, schema=STAGING_SCHEMA)

    def _explain(self, out: list[dict], top1: list[tuple[int, str, str | None]]) -> None:
        """The model's one-sentence explanation of each user's top-1, cleaned like any prompt field."""
        from ..instructions.explain import explanation_input
        from ..instructions.fields import clean_sentence
        from ..model.generate import generate_texts

        cfg = self.explain
        inputs = [explanation_input(prompt, title, self.tokenizer, cfg.max_chars) for _, prompt, title in top1]
        written = generate_texts(self.model, self.tokenizer, inputs, cfg.max_new_tokens, batch_size=8)
        for (row, _, _), generated in zip(top1, written):
            out[row]["explanation"] = clean_sentence(generated.text, cfg.max_chars)

    def _quarantine_row(self, record: dict, reason: str) -> dict:
        return {
            "kind": "quarantine",
            "run_date": self.constants["run_date"],
            "user_id": None if record.get("user_id") is None else str(record.get("user_id")),
            "reason": reason,
            "row_json": json.dumps(record, default=str, ensure_ascii=False),
        }
