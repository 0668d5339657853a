"""In-process verbalizer scoring for validation during tuning (DESIGN section 5, way 1).

A reranking prompt lists the candidates with index letters and ends where the answer letter goes. One
forward pass per prompt; only the last position's logits are computed (``logits_to_keep=1``) and the
log-probabilities of the candidate letters are the candidates' scores. The scoring package has its own
scorer for the nightly job; this one exists so that tuning can pick its best adapter without Ray
(see ``validation.py``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .precision import autocast


def letter_token_ids(tokenizer, letters: Sequence[str]) -> list[int]:
    """The single token id each letter is written as right after the generation prompt."""
    ids = []
    for letter in letters:
        tokens = tokenizer.encode(letter, add_special_tokens=False)
        if len(tokens) != 1:
            raise ValueError(f"candidate letter {letter!r} is {len(tokens)} tokens for this tokenizer, expected 1")
        ids.append(tokens[0])
    return ids


@torch.no_grad()
def letter_scores(model, tokenizer, prompts: Sequence[str], letters: Sequence[Sequence[str]],
                  device: torch.device, batch_size: int = 8, bf16: bool = False) -> np.ndarray:
    """[n_prompts, max_letters] next-token log-probabilities of each prompt's letters (NaN padding)."""
    width = max((len(ls) for ls in letters), default=0)
    scores = np.full((len(prompts), width), np.nan)
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    order = np.argsort([len(ids) for ids in encoded], kind="stable")  # similar lengths share a batch
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    letter_ids: dict[tuple[str, ...], list[int]] = {}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [encoded[i] for i in rows]
            n = max(len(ids) for ids in batch)
            # Left padding puts every prompt's last token in the last column, which is the one column
            # logits_to_keep=1 keeps. Positions count real tokens only, as for an unpadded prompt.
            ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), n), dtype=torch.long)
            for i, seq in enumerate(batch):
                ids[i, n - len(seq):] = torch.tensor(seq)
                mask[i, n - len(seq):] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with autocast(device, bf16):
                out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                            position_ids=positions.to(device), logits_to_keep=1, use_cache=False)
            logprobs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
            for i, row in enumerate(rows):
                key = tuple(letters[row])
                if key not in letter_ids:  # rows usually share one letter set: tokenise it once
                    letter_ids[key] = letter_token_ids(tokenizer, key)
                token_ids = letter_ids[key]
                scores[row, : len(token_ids)] = logprobs[i, token_ids].numpy()
    finally:
        model.train(was_training)
    return scores
