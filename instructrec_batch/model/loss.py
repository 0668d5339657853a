"""Cross-entropy on the answer tokens only, projecting only those positions onto the vocabulary.

The plain ``labels=`` loss of a causal LM computes [batch, seq, vocab] logits (8 x 300 x 49k floats =
~470 MB in fp32, plus their gradient) to keep a handful of them. Here the transformer body runs once,
the hidden states at the answer positions are gathered, and only those rows meet ``lm_head``.

The loss is a mean per example, then over the batch. A mean over answer tokens let the 15-25-token
titles of the matching form outweigh the one-letter answers of reranking (the form scoring uses) about
three to one in every batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def causal_lm_parts(model) -> tuple[nn.Module, nn.Module]:
    """(body, lm_head) of a Hugging Face causal LM, with or without a peft wrapper around it."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(lm, lm.base_model_prefix, None)
    head = lm.get_output_embeddings()
    if body is None or head is None:
        raise TypeError(f"{type(lm).__name__} is not a decoder-only causal LM with a separable lm_head")
    return body, head


class AnswerLoss(nn.Module):
    """Wraps the (LoRA) model so that DDP can wrap this module: its forward returns the loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, target_rows, target_cols, target_ids) -> torch.Tensor:
        body, head = causal_lm_parts(self.model)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        picked = hidden[target_rows, target_cols]  # [n_answer_tokens, hidden]
        logits = head(picked).float()  # the softmax in fp32 even under bf16 autocast
        cap = getattr(getattr(self.model, "config", None), "final_logit_softcapping", None)
        if cap:  # Gemma-style models squash logits in their own forward; do the same here
            logits = torch.tanh(logits / cap) * cap
        return per_example_mean(F.cross_entropy(logits, target_ids, reduction="none"), target_rows)


def per_example_mean(token_losses: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean over each example's answer tokens, then over the examples that have any."""
    n_rows = int(rows.max()) + 1
    sums = torch.zeros(n_rows, dtype=token_losses.dtype, device=token_losses.device).index_add(0, rows, token_losses)
    counts = torch.zeros(n_rows, dtype=token_losses.dtype, device=token_losses.device).index_add(
        0, rows, torch.ones_like(token_losses))
    present = counts > 0
    return (sums[present] / counts[present]).mean()
