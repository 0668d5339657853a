"""The three scorers (benchmarks/scoring.py compares them). Pure torch: prepared rows in, one score per candidate out.

- ``verbalizer``: one forward pass over the prompt, the logits of the candidate letters at the last
  position only (only the letters' rows of the output projection, in fp32).
- ``likelihood``: the log-probability of each candidate's title after the prompt, with the prompt and
  all candidates packed into ONE sequence: candidate tokens see the prompt and their own earlier tokens
  (a 4D block mask) and their positions restart at the prompt's end, so each candidate is scored as if it
  followed the prompt alone, while the prompt is computed once. Measured fastest by benchmarks/scoring.py.
- ``naive``: one full sequence (prompt + title) per candidate. Benchmark baseline only.

Rows are batched by token budget (``batching.token_batches``). Verbalizer and naive pad on the LEFT so
the answer sits at the last position of every row; position ids are counted from the first real token so
padding never shifts a row's positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .token_batches import token_batches
from .rows import PreparedRow


def _left_padded(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, seq in enumerate(seqs):
        ids[b, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[b, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


@torch.inference_mode()
def verbalizer_scores(model, rows: Sequence[PreparedRow], batch_tokens: int, pad_id: int) -> list[np.ndarray]:
    """Score = next-token logit of each candidate's letter at the answer position.

    Only the letters' rows of the output projection are applied, in fp32: in bf16 the 20 letter
    logits round to steps of ~0.06 and tie or swap (`benchmarks/scoring.py` measured bf16 NDCG@10
    0.020 below fp32 on 300 validation users when the whole bf16 logit row was read), and the other
    49k vocabulary rows were never needed."""
    body, head = model.get_decoder(), model.get_output_embeddings()
    out: list[np.ndarray] = [np.empty(0)] * len(rows)
    for batch in token_batches([r.n_input_tokens for r in rows], batch_tokens):
        ids, mask, positions = _left_padded([rows[i].prompt_ids for i in batch], pad_id, model.device)
        hidden = body(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
        last = hidden[:, -1].float()
        # Pick the letters on the device: copying whole vocabulary rows to the host per user costs
        # more than the gather (a visible share of GPU time in a profile).
        picked = []
        for b, i in enumerate(batch):
            letters = torch.tensor(rows[i].letter_ids, device=hidden.device)
            weight = head.weight.index_select(0, letters).float()
            bias = head.bias.index_select(0, letters).float() if head.bias is not None else 0.0
            picked.append(weight @ last[b] + bias)
        host = torch.cat(picked).cpu().double().numpy()
        offset = 0
        for b, i in enumerate(batch):
            n = len(rows[i].letter_ids)
            out[i] = host[offset : offset + n]
            offset += n
    return out


def _reduce(token_logp: torch.Tensor, segments: torch.Tensor, n_segments: int, lengths: torch.Tensor, mean: bool) -> np.ndarray:
    sums = torch.zeros(n_segments, dtype=torch.float64).index_add_(0, segments, token_logp.double())
    return (sums / lengths.double() if mean else sums).numpy()


def pack(prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[int]]:
    """Token ids, position ids and block ids (0 = prompt, j = answer j) of one packed sequence: each
    answer follows the prompt at the same positions, as if it were the only one. Tuning packs its
    examples the same way, so it trains exactly the scores this scorer serves."""
    n_prompt = len(prompt_ids)
    ids, positions, blocks = list(prompt_ids), list(range(n_prompt)), [0] * n_prompt
    for j, answer in enumerate(answers, start=1):
        ids += answer
        positions += range(n_prompt, n_prompt + len(answer))
        blocks += [j] * len(answer)
    return ids, positions, blocks


def block_mask(blocks: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D mask (B, 1, T, T): query i sees key j when j <= i and j is in the prompt or in i's own
    candidate. Padding (block -1) sees only itself so that no attention row is empty (an all-masked row
    gives NaN in SDPA, which would then leak through the values)."""
    width = blocks.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=blocks.device).tril()
    q, k = blocks[:, :, None], blocks[:, None, :]
    allowed = causal & (k >= 0) & ((k == 0) | (k == q))
    allowed |= torch.eye(width, dtype=torch.bool, device=blocks.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=blocks.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def packed_batch(prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[Sequence[int]]],
                 pad_id: int) -> dict[str, torch.Tensor]:
    """Rows packed by ``pack`` and right-padded: ids, positions, block ids (-1 = padding, for
    ``block_mask``), and the flat (row, position) pairs whose hidden state predicts an answer token: the
    prompt's last state predicts every answer's first token, an answer's own token k-1 its token k. Each
    answer is a segment: ``token_segments`` maps tokens to segments, ``segment_rows`` segments to rows,
    ``first_segments`` names each row's first answer. Scoring and tuning batch with this one function."""
    packed = [pack(p, a) for p, a in zip(prompts, answers)]
    width = max(len(ids) for ids, _, _ in packed)
    ids = torch.full((len(packed), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(packed), width), dtype=torch.long)
    blocks = torch.full((len(packed), width), -1, dtype=torch.long)
    rows, cols, targets, token_segments, segment_rows, first_segments = [], [], [], [], [], []
    for i, (prompt, row_answers, (seq, pos, blk)) in enumerate(zip(prompts, answers, packed)):
        ids[i, : len(seq)] = torch.tensor(seq)
        positions[i, : len(seq)] = torch.tensor(pos)
        blocks[i, : len(seq)] = torch.tensor(blk)
        first_segments.append(len(segment_rows))
        start = len(prompt)  # where the current answer's tokens begin
        for answer in row_answers:
            rows.extend([i] * len(answer))
            cols.extend([len(prompt) - 1, *range(start, start + len(answer) - 1)])
            targets.extend(answer)
            token_segments.extend([len(segment_rows)] * len(answer))
            segment_rows.append(i)
            start += len(answer)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return {
        "input_ids": ids, "position_ids": positions, "blocks": blocks,
        "token_rows": as_long(rows), "token_cols": as_long(cols), "token_ids": as_long(targets),
        "token_segments": as_long(token_segments), "segment_rows": as_long(segment_rows),
        "first_segments": as_long(first_segments),
    }


@torch.inference_mode()
def likelihood_scores(
    model, rows: Sequence[PreparedRow], batch_tokens: int, pad_id: int, length_normalize: bool = True
) -> list[np.ndarray]:
    """Mean (or summed) log-prob of each candidate title given the prompt, candidates packed per row."""
    body, head = model.get_decoder(), model.get_output_embeddings()
    dtype = next(model.parameters()).dtype
    device = model.device
    out: list[np.ndarray] = [np.empty(0)] * len(rows)
    lengths = [len(r.prompt_ids) + sum(len(t) for t in r.title_ids) for r in rows]
    for batch in token_batches(lengths, batch_tokens):
        t = packed_batch([rows[i].prompt_ids for i in batch], [rows[i].title_ids for i in batch], pad_id)
        hidden = body(
            input_ids=t["input_ids"].to(device),
            attention_mask=block_mask(t["blocks"].to(device), dtype),
            position_ids=t["position_ids"].to(device),
            use_cache=False,
        ).last_hidden_state
        logits = head(hidden[t["token_rows"].to(device), t["token_cols"].to(device)]).float()
        token_logp = logits.log_softmax(-1).gather(1, t["token_ids"].to(device)[:, None])[:, 0].cpu()
        n_segments = len(t["segment_rows"])
        seg_len = torch.bincount(t["token_segments"], minlength=n_segments)
        scores = _reduce(token_logp, t["token_segments"], n_segments, seg_len, length_normalize)
        offset = 0
        for i in batch:
            n = len(rows[i].title_ids)
            out[i] = scores[offset : offset + n]
            offset += n
    return out


@torch.inference_mode()
def naive_scores(
    model, rows: Sequence[PreparedRow], batch_tokens: int, pad_id: int, length_normalize: bool = True
) -> list[np.ndarray]:
    """The baseline: prompt + title as its own sequence for every candidate (cost ~ candidates x prompt).
    Left padding puts every title at the end, so only the last (longest title + 1) positions need logits."""
    seqs, owners = [], []
    for i, row in enumerate(rows):
        for title in row.title_ids:
            seqs.append(row.prompt_ids + title)
            owners.append((i, len(title)))
    flat = np.empty(len(seqs))
    for batch in token_batches([len(s) for s in seqs], batch_tokens):
        ids, mask, positions = _left_padded([seqs[j] for j in batch], pad_id, model.device)
        keep = max(owners[j][1] for j in batch) + 1
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep, use_cache=False).logits
        logp = logits.float().log_softmax(-1).cpu()
        for b, j in enumerate(batch):
            m = owners[j][1]
            target = ids[b, -m:].cpu()
            # logits index keep-1 is the last position; title token k is predicted one position earlier.
            token_logp = logp[b, keep - 1 - m : keep - 1].gather(1, target[:, None])[:, 0].double()
            flat[j] = (token_logp.mean() if length_normalize else token_logp.sum()).item()
    out, offset = [], 0
    for row in rows:
        out.append(flat[offset : offset + len(row.title_ids)])
        offset += len(row.title_ids)
    return out


SCORER_FUNCTIONS = {"verbalizer": verbalizer_scores, "likelihood": likelihood_scores, "naive": naive_scores}


def score_rows(
    model, rows: Sequence[PreparedRow], scorer: str, batch_tokens: int, pad_id: int, length_normalize: bool = True
) -> list[np.ndarray]:
    """Scores for non-fallback prepared rows with the named scorer."""
    if scorer == "verbalizer":
        return verbalizer_scores(model, rows, batch_tokens, pad_id)
    return SCORER_FUNCTIONS[scorer](model, rows, batch_tokens, pad_id, length_normalize)
