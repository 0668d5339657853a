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

from ..scoring.scorers import pack

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
    """Right-padded packed ids, their positions and block ids (-1 = padding, for the attention mask),
    and the flat (row, position) pairs whose hidden state predicts an answer token.

    An answer's first token is predicted from the prompt's last position, its token k from its own token
    k-1. Only these positions go through the vocabulary projection. Every answer is a segment:
    ``token_segments`` maps tokens to segments, ``segment_rows`` segments to examples, and
    ``target_segments`` names each example's true answer.
    """
    packed = [pack(e.prompt_ids, e.answers) for e in batch]
    width = max(len(ids) for ids, _, _ in packed)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    blocks = torch.full((len(batch), width), -1, dtype=torch.long)
    rows, cols, targets, token_segments, segment_rows, target_segments = [], [], [], [], [], []
    for i, (e, (seq, pos, blk)) in enumerate(zip(batch, packed)):
        ids[i, : len(seq)] = torch.tensor(seq)
        positions[i, : len(seq)] = torch.tensor(pos)
        blocks[i, : len(seq)] = torch.tensor(blk)
        target_segments.append(len(segment_rows))
        start = len(e.prompt_ids)  # where the current answer's tokens begin
        for answer in e.answers:
            sources = [len(e.prompt_ids) - 1, *range(start, start + len(answer) - 1)]
            rows.extend([i] * len(answer))
            cols.extend(sources)
            targets.extend(answer)
            token_segments.extend([len(segment_rows)] * len(answer))
            segment_rows.append(i)
            start += len(answer)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return {
        "input_ids": ids,
        "position_ids": positions,
        "blocks": blocks,
        "token_rows": as_long(rows),
        "token_cols": as_long(cols),
        "token_ids": as_long(targets),
        "token_segments": as_long(token_segments),
        "segment_rows": as_long(segment_rows),
        "target_segments": as_long(target_segments),
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
