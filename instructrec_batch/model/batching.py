"""Training examples -> token ids -> padded batches that mark where the answer tokens are.

The contract with the instructions stage: ``prompt`` is the final model input (chat template applied,
generation prompt added) and ``answer`` is exactly the text the model must emit next. Prompt and answer
are tokenised separately and concatenated, which is also how inference reads the model (prompt ids,
then the next-token distribution), so training and scoring see the same token boundary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]  # prompt ids followed by answer ids
    n_prompt: int  # the answer starts at this position


def as_records(examples: Any) -> list[dict]:
    """A pandas DataFrame or any iterable of dicts, as a list of dicts (no Spark here on purpose)."""
    if hasattr(examples, "to_dict"):
        return examples.to_dict("records")
    return list(examples)


def encode_examples(records: Iterable[dict], tokenizer, max_tokens: int, append_eos: bool) -> list[Encoded]:
    """Token ids for each example. Examples longer than ``max_tokens`` are dropped, not truncated:
    cutting a prompt here would remove candidates or the instruction itself (the instructions stage
    owns budgets and shortens history first), so a long example is a data problem to count and log."""
    records = list(records)
    prompts = tokenizer([r["prompt"] for r in records], add_special_tokens=False)["input_ids"]
    answers = tokenizer([str(r["answer"]) for r in records], add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []
    out, too_long, empty = [], 0, 0
    for prompt, answer in zip(prompts, answers):
        if not answer:
            empty += 1
            continue
        ids = prompt + answer + eos
        if len(ids) > max_tokens:
            too_long += 1
            continue
        out.append(Encoded(ids, len(prompt)))
    if too_long or empty:
        log.warning(
            "dropped %d of %d examples longer than tune.max_tokens=%d and %d with an empty answer",
            too_long, len(records), max_tokens, empty,
        )
    if not out:
        raise ValueError(f"no training example fits tune.max_tokens={max_tokens}")
    return out


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids plus the flat (row, position) pairs whose hidden state predicts an answer token.

    Position p predicts token p+1, so the answer tokens at [n_prompt, len) are predicted from
    [n_prompt-1, len-1). Only these positions go through the vocabulary projection.
    """
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        positions = range(e.n_prompt - 1, n - 1)
        rows.extend([i] * len(positions))
        cols.extend(positions)
        targets.extend(e.input_ids[p + 1] for p in positions)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "target_rows": torch.tensor(rows, dtype=torch.long),
        "target_cols": torch.tensor(cols, dtype=torch.long),
        "target_ids": torch.tensor(targets, dtype=torch.long),
    }


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
