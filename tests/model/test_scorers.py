"""Scorers against hand-computed references on a tiny random Llama (fp32), plus batching and top-K."""

from __future__ import annotations

import numpy as np
import pandas as pd

from instructrec_batch.config import ScoringConfig
import pytest
import torch

from instructrec_batch.model.base import load_causal_lm, load_tokenizer
from instructrec_batch.model.frame import score_frame, top_k
from instructrec_batch.model.token_batches import token_batches
from instructrec_batch.model.frame import score_records
from instructrec_batch.model.rows import MalformedRow, RowPreparer

from tests.scoring.helpers import fallback_row, prompt_row


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_causal_lm(tiny_model_dir, "fp32"), load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def rows(tiny):
    _, tokenizer = tiny
    # Different history lengths and candidate counts: batches mix lengths, so padding is exercised.
    return [prompt_row(tokenizer, f"u{i}", n_candidates=4 + 3 * i, history=1 + 4 * i, offset=i) for i in range(4)]


def _reference_title_logp(model, tokenizer, prompt: str, title: str, mean: bool) -> float:
    """Plain full sequence, no batching, no packing: log p(title | prompt)."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t = tokenizer(title, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = model(torch.tensor([p + t])).logits[0].log_softmax(-1)
    values = [logp[len(p) - 1 + k, t[k]].item() for k in range(len(t))]
    return float(np.mean(values) if mean else np.sum(values))


def test_token_batches_respect_budget_and_sort_by_length():
    lengths = [50, 10, 30, 10, 200, 20]
    batches = token_batches(lengths, 60)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 60
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
    assert [4] in batches  # longer than the budget: alone, never dropped


def test_verbalizer_matches_last_position_letter_logits(tiny, rows):
    model, tokenizer = tiny
    scored = score_frame(pd.DataFrame(rows), model, tokenizer, ScoringConfig(batch_tokens=300), "verbalizer")
    for row in rows:
        ids = torch.tensor([tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            last = model(ids).logits[0, -1]
        letters = [tokenizer.convert_tokens_to_ids(x) for x in row["candidate_letters"]]
        got = scored[scored.user_id == row["user_id"]]
        assert list(got.item_id) == row["candidate_item_ids"]
        np.testing.assert_allclose(got.score.to_numpy(), last[letters].double().numpy(), atol=1e-5)


def test_a_bf16_verbalizer_reads_its_letters_through_an_fp32_projection(tiny_model_dir, rows):
    """bf16 logits sit on a grid of 8 mantissa bits, where 20 letters tie or swap; the letters' logits
    are projected in fp32 from the bf16 hidden state instead, so they are off that grid."""
    model, tokenizer = load_causal_lm(tiny_model_dir, "bf16"), load_tokenizer(tiny_model_dir)
    scores = score_frame(pd.DataFrame(rows), model, tokenizer, ScoringConfig(), "verbalizer").score.to_numpy()
    on_bf16_grid = torch.tensor(scores, dtype=torch.float32).bfloat16().double().numpy() == scores
    assert not on_bf16_grid.all()


@pytest.mark.parametrize("mean", [True, False])
def test_likelihood_matches_full_sequence_reference(tiny, rows, mean):
    model, tokenizer = tiny
    scored = score_frame(pd.DataFrame(rows), model, tokenizer, ScoringConfig(batch_tokens=500, length_normalize=mean), "likelihood")
    for row in rows[:2]:
        expected = [_reference_title_logp(model, tokenizer, row["prompt"], t, mean) for t in row["candidate_titles"]]
        got = scored[scored.user_id == row["user_id"]].score.to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_naive_and_likelihood_agree_in_fp32(tiny, rows):
    model, tokenizer = tiny
    frame = pd.DataFrame(rows)
    packed = score_frame(frame, model, tokenizer, ScoringConfig(batch_tokens=700), "likelihood")
    naive = score_frame(frame, model, tokenizer, ScoringConfig(batch_tokens=700), "naive")
    assert list(packed.item_id) == list(naive.item_id)
    np.testing.assert_allclose(packed.score.to_numpy(), naive.score.to_numpy(), atol=1e-4)
    assert (top_k(packed, 3).item_id.tolist()) == (top_k(naive, 3).item_id.tolist())


def test_batching_does_not_change_scores(tiny, rows):
    model, tokenizer = tiny
    frame = pd.DataFrame(rows)
    one_by_one = score_frame(frame, model, tokenizer, ScoringConfig(batch_tokens=1), "verbalizer")
    together = score_frame(frame, model, tokenizer, ScoringConfig(batch_tokens=100_000), "verbalizer")
    np.testing.assert_allclose(one_by_one.score.to_numpy(), together.score.to_numpy(), atol=1e-5)


def test_fallback_rows_score_in_list_order(tiny):
    model, tokenizer = tiny
    scored = score_frame(pd.DataFrame([fallback_row("f", ["x", "y", "z"])]), model, tokenizer, ScoringConfig())
    assert top_k(scored, 3).item_id.tolist() == ["x", "y", "z"]


def test_malformed_rows_are_reported_not_raised(tiny, rows):
    model, tokenizer = tiny
    bad_letters = {**rows[0], "user_id": "bad1", "candidate_letters": rows[0]["candidate_letters"][:-1]}
    no_prompt = {**rows[0], "user_id": "bad2", "prompt": None}
    multi_token_letter = {**rows[0], "user_id": "bad3", "candidate_letters": ["A", "B", "C", "Zebra crossing"]}
    preparer = RowPreparer(tokenizer, "verbalizer", max_input_tokens=2048, max_title_tokens=32)
    results = score_records([rows[1], bad_letters, no_prompt, multi_token_letter], model, preparer, 4096)
    assert results[0].error is None and len(results[0].scores) == len(rows[1]["candidate_item_ids"])
    assert "candidate_letters" in results[1].error
    assert "prompt is null" in results[2].error
    assert "single token" in results[3].error
    too_long = RowPreparer(tokenizer, "verbalizer", max_input_tokens=10, max_title_tokens=32)
    assert "max_input_tokens" in score_records([rows[1]], model, too_long, 4096)[0].error
    with pytest.raises(MalformedRow, match="bad1"):
        score_frame(pd.DataFrame([bad_letters]), model, tokenizer, ScoringConfig(), "verbalizer")


def test_top_k_ranks_and_breaks_ties_by_item_id():
    scored = pd.DataFrame(
        {"user_id": ["a"] * 4 + ["b"] * 2, "item_id": ["z", "y", "x", "w", "p", "q"], "score": [1.0, 2.0, 2.0, 0.5, 0.1, 0.2]}
    )
    best = top_k(scored, 3)
    assert best[best.user_id == "a"].item_id.tolist() == ["x", "y", "z"]
    assert best[best.user_id == "a"]["rank"].tolist() == [1, 2, 3]
    assert best[best.user_id == "b"].item_id.tolist() == ["q", "p"]  # fewer than k: all of them



def test_without_a_model_pass_rows_are_still_checked_and_a_zero_weight_fusion_serves_the_same_order(tiny, rows):
    from instructrec_batch.model.fusion import FusionParams
    from instructrec_batch.scoring.actor import fused_scores

    model, tokenizer = tiny
    preparer = RowPreparer(tokenizer, "verbalizer", max_input_tokens=2048, max_title_tokens=32)
    no_prompt = {**rows[0], "user_id": "bad", "prompt": None}
    # No model at all: none is run.
    skipped = score_records([rows[1], no_prompt], None, preparer, 4096, model_pass=False)
    n = len(rows[1]["candidate_item_ids"])
    assert skipped[0].error is None and skipped[0].scores.tolist() == [0.0] * n
    assert "prompt is null" in skipped[1].error
    real = score_records([rows[1]], model, preparer, 4096)[0].scores
    assert np.ptp(real) > 0
    record = {**rows[1], "candidate_retrieval_ranks": list(range(n, 0, -1)), "candidate_popularity": [0.1] * n,
              "candidate_title_similarity": [0.5 * (i % 2) for i in range(n)]}
    params = FusionParams(model_weight=0.0, similarity_weight=1.0)
    np.testing.assert_array_equal(fused_scores(record, skipped[0].scores, params), fused_scores(record, real, params))
