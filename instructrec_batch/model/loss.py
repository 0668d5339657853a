"""The tuning loss, projecting only the answer positions onto the vocabulary.

The plain ``labels=`` loss of a causal LM computes [batch, seq, vocab] logits (8 x 300 x 49k floats =
~470 MB in fp32, plus their gradient) to keep a handful of them. Here the transformer body runs once over
packed examples (``batching.collate``), the hidden states at the answer positions are gathered, and only
those rows meet ``lm_head``.

Per answer segment the score is its mean token log-probability, the likelihood scorer's own score. The
loss of an example is:
- the answer term: minus the true answer's score, i.e. its mean cross-entropy. A mean per example, then
  over the batch: a mean over all answer tokens let 15-25-token titles outweigh one-letter answers about
  three to one;
- plus, for matching examples packed with negatives' titles, ``ranking_weight`` x the softmax
  cross-entropy of the true title among the candidates' scores / ``temperature``: the 1 positive + N
  negatives ranking that validation and serving do, trained directly. Raising the target's likelihood
  alone does not rank it above the negatives when both move together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .scorers import block_mask


def causal_lm_parts(model) -> tuple[nn.Module, nn.Module]:
    """(body, lm_head) of a Hugging Face causal LM, with or without a peft wrapper around it."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(lm, lm.base_model_prefix, None)
    head = lm.get_output_embeddings()
    if body is None or head is None:
        raise TypeError(f"{type(lm).__name__} is not a decoder-only causal LM with a separable lm_head")
    return body, head


class TuneLoss(nn.Module):
    """Wraps the (LoRA) model so that DDP can wrap this module: its forward returns the loss."""

    def __init__(self, model: nn.Module, ranking_weight: float = 1.0, temperature: float = 1.0,
                 mask_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model = model
        self.ranking_weight = ranking_weight
        self.temperature = temperature
        self.mask_dtype = mask_dtype  # the attention's compute dtype (bf16 under autocast)

    def forward(self, input_ids, position_ids, blocks, token_rows, token_cols, token_ids, token_segments,
                segment_rows, target_segments) -> torch.Tensor:
        body, head = causal_lm_parts(self.model)
        hidden = body(input_ids=input_ids, attention_mask=block_mask(blocks, self.mask_dtype),
                      position_ids=position_ids, use_cache=False).last_hidden_state
        logits = head(hidden[token_rows, token_cols]).float()  # the softmax in fp32 even under bf16 autocast
        cap = getattr(getattr(self.model, "config", None), "final_logit_softcapping", None)
        if cap:  # Gemma-style models squash logits in their own forward; do the same here
            logits = torch.tanh(logits / cap) * cap
        token_logp = -F.cross_entropy(logits, token_ids, reduction="none")
        scores = segment_means(token_logp, token_segments, len(segment_rows))
        loss = -scores[target_segments].mean()
        ranking = ranking_losses(scores / self.temperature, segment_rows, target_segments)
        if self.ranking_weight and ranking.numel():
            loss = loss + self.ranking_weight * ranking.mean()
        return loss


def segment_means(values: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    sums = torch.zeros(n_segments, dtype=values.dtype, device=values.device).index_add(0, segments, values)
    counts = torch.zeros(n_segments, dtype=values.dtype, device=values.device).index_add(
        0, segments, torch.ones_like(values))
    return sums / counts


def ranking_losses(scores: torch.Tensor, segment_rows: torch.Tensor, target_segments: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of the true segment among its example's segments, for each example with
    more than one segment (an example with one answer has nothing to rank)."""
    n_examples = len(target_segments)
    counts = torch.bincount(segment_rows, minlength=n_examples)
    ranked = counts > 1
    if not bool(ranked.any()):
        return scores.new_zeros(0)
    # [example, slot] matrix of scores, -inf where an example has fewer segments
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(segment_rows), device=scores.device) - first[segment_rows]
    table = scores.new_full((n_examples, int(counts.max())), float("-inf"))
    table = table.index_put((segment_rows, slot), scores)
    target_slot = target_segments - first
    return F.cross_entropy(table[ranked], target_slot[ranked], reduction="none")
