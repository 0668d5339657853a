"""Training examples -> token ids -> packed batches that mark which positions predict which answer.

The contract with the instructions stage: ``prompt`` is the final model input (chat template applied,
generation prompt added) and ``answer`` is exactly the text the model must emit next. Prompt and answer
are tokenised separately and concatenated, which is also how inference reads the model (prompt ids,
then the next-token distribution), so training and scoring see the same token boundary.

A matching example may also carry its negatives' titles (``tune.ranking_negatives``): then its sequence
is packed as the likelihood scorer packs a user (prompt once, then every candidate title at the same
positions, each seeing only the prompt and itself), so the loss can rank the target's title against the
negatives' with the very scores that serving ranks by.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .scorers import packed_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    prompt_ids: list[int]
    answers: tuple[list[int], ...]  # the true answer first, then any negatives' titles

    @property
    def n_tokens(self) -> int:
        return len(self.prompt_ids) + sum(len(a) for a in self.answers)


def as_records(examples: Any) -> list[dict]:
    """A pandas DataFrame or any iterable of dicts, as a list of dicts (no Spark here on purpose)."""
    if hasattr(examples, "to_dict"):
        return examples.to_dict("records")
    return list(examples)


def negative_titles(record: dict, n: int) -> list[str]:
    """The first n negatives' titles of a matching example (its candidates are already shuffled)."""
    if n <= 0 or record.get("task_form") != "matching":
        return []
    ids, titles = list(record.get("candidate_item_ids", [])), list(record.get("candidate_titles", []))
    return [t for x, t in zip(ids, titles) if x != record.get("target_item_id") and t][:n]


def encode_examples(records: Iterable[dict], tokenizer, max_tokens: int, append_eos: bool,
                    ranking_negatives: int = 0) -> list[Encoded]:
    """Token ids for each example. Examples whose prompt + answer exceed ``max_tokens`` are dropped, not
    truncated: cutting a prompt here would remove candidates or the instruction itself (the instructions
    stage owns budgets and shortens history first), so a long example is a data problem to count and log.
    Negatives' titles come on top of that budget (a packed sequence is longer, as it is in scoring)."""
    records = list(records)
    prompts = tokenizer([r["prompt"] for r in records], add_special_tokens=False)["input_ids"]
    answers = tokenizer([str(r["answer"]) for r in records], add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []
    out, too_long, empty = [], 0, 0
    for record, prompt, answer in zip(records, prompts, answers):
        if not answer:
            empty += 1
            continue
        if len(prompt) + len(answer) + len(eos) > max_tokens:
            too_long += 1
            continue
        negatives = negative_titles(record, ranking_negatives)
        if negatives:
            # No end-of-turn token here: the scorer compares titles alone, and only the target has one.
            out.append(Encoded(prompt, (answer, *tokenizer(negatives, add_special_tokens=False)["input_ids"])))
        else:
            out.append(Encoded(prompt, (answer + eos,)))
    if too_long or empty:
        log.warning(
            "dropped %d of %d examples longer than tune.max_tokens=%d and %d with an empty answer",
            too_long, len(records), max_tokens, empty,
        )
    if not out:
        raise ValueError(f"no training example fits tune.max_tokens={max_tokens}")
    return out


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Packed, right-padded batch (``scorers.packed_batch``, the likelihood scorer's own), in
    which each example's first segment is its true answer (``target_segments``)."""
    out = packed_batch([e.prompt_ids for e in batch], [e.answers for e in batch], pad_id)
    out["target_segments"] = out.pop("first_segments")
    return out


def micro_batch_indices(n: int, step: int, micro: int, batch_size: int, grad_accum: int,
                        rank: int, world: int, seed: int) -> np.ndarray:
    """Example indices of one micro-batch, a pure function of the step counter.

    Every epoch is a fresh seeded permutation; each optimizer step consumes batch_size * grad_accum *
    world examples and rank r takes its own slice. Because nothing but `step` is needed, resuming from a
    checkpoint continues with exactly the batches an uninterrupted run would have seen.
    """
    start = (step * grad_accum + micro) * batch_size * world + rank * batch_size
    idx = np.arange(start, start + batch_size)
    epochs, offsets = np.divmod(idx, n)
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        perm = np.random.default_rng([seed, int(epoch)]).permutation(n)
        sel = epochs == epoch
        out[sel] = perm[offsets[sel]]
    return out
