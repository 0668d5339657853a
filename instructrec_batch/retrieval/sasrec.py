"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018), compact and faithful:
the learned sequential retriever (retrieval/sequential.py) and the evaluation's `sasrec` baseline.

Why our own: the well-kept libraries that ship it do not install into this project's pinned venv
(RecBole 1.2.1 requires ray<=2.6.3, we pin ray 2.60; RecTools 0.19 requires numpy<2 and attrs<24 on
Python 3.11, we have numpy 2.4 and attrs 26). The model follows the paper and its reference code:
- item embeddings (scaled by sqrt(d)) + learned positional embeddings, dropout;
- ``n_blocks`` blocks as in the reference code: causal multi-head self-attention whose query is the
  LayerNormed input (residual onto that query), LayerNorm, a position-wise two-layer feed-forward with
  ReLU (residual), padding positions zeroed after each block; a final LayerNorm;
- the score of item i after position t is the dot product of the hidden state with i's embedding
  (shared input/output embeddings);
- training, `loss: bce` (the paper): binary cross-entropy on the next item at every position against
  one uniformly sampled negative the user never interacted with, padding positions masked out; Adam.
  `loss: ce`: softmax cross-entropy of the next item over the whole catalogue at every position, as
  the full-ranking baselines of later work train SASRec (e.g. BERT4Rec's and LRURec's comparisons).
  One sampled negative teaches the model to beat a random item, not to rank the whole catalogue: on
  the Games lake, recall@20 over all items was 0.026 with bce and is several times that with ce
  (README, "Retrieval").
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SASRecParams:
    dim: int
    max_len: int
    n_blocks: int
    n_heads: int
    dropout: float
    lr: float
    batch_size: int
    epochs: int
    seed: int
    loss: str = "bce"  # bce | ce (module docstring)


class _Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, causal: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        q = self.attn_norm(x)
        # As in the reference code: the query is normalised, keys/values are the block's input.
        out, _ = self.attn(q, x, x, attn_mask=causal, need_weights=False)
        x = self.ffn_norm(q + out)
        return (x + self.ffn(x)) * keep


class SASRec(nn.Module):
    """Item ids are 1..n_items; 0 is padding (sequences are left-padded)."""

    def __init__(self, n_items: int, params: SASRecParams):
        super().__init__()
        self.params = params
        self.item_emb = nn.Embedding(n_items + 1, params.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(params.max_len, params.dim)
        self.drop = nn.Dropout(params.dropout)
        self.blocks = nn.ModuleList(_Block(params.dim, params.n_heads, params.dropout) for _ in range(params.n_blocks))
        self.last_norm = nn.LayerNorm(params.dim, eps=1e-8)
        # Small embeddings, as the reference code's Xavier initialisation: with PyTorch's N(0, 1) the
        # first logits have a standard deviation of about sqrt(dim), the catalogue softmax is one-hot
        # and the full-catalogue loss learns little per step.
        for emb in (self.item_emb, self.pos_emb):
            nn.init.xavier_normal_(emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def hidden(self, seqs: torch.Tensor) -> torch.Tensor:
        """[batch, max_len] item ids -> [batch, max_len, dim] states (state t has seen items <= t)."""
        length = seqs.shape[1]
        x = self.item_emb(seqs) * math.sqrt(self.params.dim)
        x = x + self.pos_emb(torch.arange(length, device=seqs.device))[None]
        keep = (seqs != 0).unsqueeze(-1).to(x.dtype)
        x = self.drop(x) * keep
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=seqs.device), diagonal=1)
        for block in self.blocks:
            x = block(x, causal, keep)
        return self.last_norm(x)

    def score(self, seqs: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items`` [batch, k] after the last position of ``seqs``."""
        last = self.hidden(seqs)[:, -1, :]
        return torch.einsum("bd,bkd->bk", last, self.item_emb(items))


class ItemIndex:
    """Item id strings <-> 1..n (0 = padding and unknown items)."""

    def __init__(self, items):
        self.items = np.array(sorted(set(items)), dtype=object)
        self.index = {item: i + 1 for i, item in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def encode(self, items) -> list[int]:
        return [self.index.get(i, 0) for i in items]


def _left_pad(seqs: list[list[int]], max_len: int) -> np.ndarray:
    out = np.zeros((len(seqs), max_len), dtype=np.int64)
    for row, seq in enumerate(seqs):
        seq = seq[-max_len:]
        if seq:
            out[row, max_len - len(seq) :] = seq
    return out


def _negatives(inputs: np.ndarray, seen: list[set[int]], n_items: int, rng: np.random.Generator) -> np.ndarray:
    """One uniformly drawn item per non-padding position that the user never interacted with."""
    negs = rng.integers(1, n_items + 1, size=inputs.shape)
    for row, user_seen in enumerate(seen):
        for col in np.nonzero(inputs[row])[0]:
            while negs[row, col] in user_seen:
                negs[row, col] = rng.integers(1, n_items + 1)
    return negs


def train_sasrec(
    train_sequences: list[list[str]], catalogue, params: SASRecParams
) -> tuple[SASRec, ItemIndex, list[float]]:
    """Fit on the training split (each user's items oldest first; the test and validation items must
    already be removed by the caller). Returns the model, its item index and the mean loss per epoch."""
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    index = ItemIndex(catalogue)
    encoded = [index.encode(s) for s in train_sequences]
    encoded = [s for s in encoded if len(s) >= 2]  # a sequence needs an input and a next item
    if not encoded:
        raise ValueError("SASRec needs at least one training sequence of two or more items")
    # Input = items[:-1], positives = items[1:] (the next item at every position), both left-padded.
    inputs = _left_pad([s[:-1] for s in encoded], params.max_len)
    positives = _left_pad([s[1:] for s in encoded], params.max_len)
    seen = [set(s) for s in encoded]
    # A GPU when present (the whole fit is small enough for one device); CPU otherwise.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = SASRec(len(index), params).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=params.lr, betas=(0.9, 0.98))
    bce = nn.BCEWithLogitsLoss(reduction="none")
    losses = []
    started = time.time()
    for epoch in range(params.epochs):
        model.train()
        order = rng.permutation(len(encoded))
        total, count = 0.0, 0
        for start in range(0, len(order), params.batch_size):
            rows = order[start : start + params.batch_size]
            seq = torch.from_numpy(inputs[rows]).to(device)
            pos = torch.from_numpy(positives[rows]).to(device)
            if params.loss == "bce":
                neg = torch.from_numpy(_negatives(inputs[rows], [seen[r] for r in rows], len(index), rng)).to(device)
            h = model.hidden(seq)
            if params.loss == "ce":
                real = pos != 0
                logits = h[real] @ model.item_emb.weight.T
                logits[:, 0] = -torch.inf  # padding is never the next item
                loss = nn.functional.cross_entropy(logits, pos[real])
            else:
                pos_logit = (h * model.item_emb(pos)).sum(-1)
                neg_logit = (h * model.item_emb(neg)).sum(-1)
                mask = (pos != 0).float()
                loss = bce(pos_logit, torch.ones_like(pos_logit)) + bce(neg_logit, torch.zeros_like(neg_logit))
                loss = (loss * mask).sum() / mask.sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
            count += len(rows)
        losses.append(total / count)
        log.info("sasrec epoch %d/%d loss %.4f (%.0f s)", epoch + 1, params.epochs, losses[-1], time.time() - started)
    return model.cpu().eval(), index, losses


@torch.no_grad()
def sasrec_scores(
    model: SASRec, index: ItemIndex, histories: list[list[str]], candidates: np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """[n_users, n_candidates] scores; padding candidates (None) get NaN."""
    model.eval()
    n, c = candidates.shape
    out = np.full((n, c), np.nan)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        seq = torch.from_numpy(_left_pad([index.encode(h) for h in histories[start:stop]], model.params.max_len))
        cand = candidates[start:stop]
        items = torch.tensor([index.encode([c_ if c_ is not None else "" for c_ in row]) for row in cand])
        scores = model.score(seq, items).numpy()
        real = np.not_equal(cand, None)
        out[start:stop][real] = scores[real]
    return out


@torch.no_grad()
def top_items(
    model: SASRec, index: ItemIndex, histories: list[list[str]], n: int, batch_size: int = 512
) -> tuple[list[list[str]], list[list[float]]]:
    """Each history's `n` best items over the whole catalogue, best first, with their scores. Items of
    the history (all of it, not only the last max_len the model reads) are never returned; items the
    index does not know are ignored as input. Scores are rounded to 5 decimals and ties go to the
    smaller item index, so the order does not depend on how users are batched."""
    model.eval()
    weights = model.item_emb.weight
    n = min(n, len(index))
    items_out: list[list[str]] = []
    scores_out: list[list[float]] = []
    for start in range(0, len(histories), batch_size):
        encoded = [index.encode(h) for h in histories[start : start + batch_size]]
        seq = torch.from_numpy(_left_pad(encoded, model.params.max_len))
        scores = model.hidden(seq)[:, -1, :] @ weights.T
        scores = torch.round(scores, decimals=5)
        scores[:, 0] = -torch.inf  # padding
        for row, enc in enumerate(encoded):
            scores[row, enc] = -torch.inf
        # A stable descending sort breaks ties by index; n <= catalogue size, -inf rows sort last.
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :n]
        picked = torch.gather(scores, 1, order)
        for row in range(len(encoded)):
            keep = torch.isfinite(picked[row])
            items_out.append(index.items[order[row][keep].numpy() - 1].tolist())
            scores_out.append(picked[row][keep].tolist())
    return items_out, scores_out
