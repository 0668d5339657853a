import numpy as np
import pytest
import torch

from instructrec_batch.model.base import load_causal_lm, load_tokenizer
from instructrec_batch.model.batching import as_records
from instructrec_batch.model.verbalizer import letter_scores, letter_token_ids, validate_reranking


def test_batched_left_padded_scores_equal_one_prompt_at_a_time(tiny_model_dir, val_examples, train_examples):
    tok = load_tokenizer(tiny_model_dir)
    model = load_causal_lm(tiny_model_dir)
    records = as_records(val_examples)[:3] + as_records(train_examples)[:3]  # different prompt lengths
    prompts = [r["prompt"] for r in records]
    letters = [list(r["candidate_letters"]) for r in records]
    cpu = torch.device("cpu")
    batched = letter_scores(model, tok, prompts, letters, cpu, batch_size=6)
    single = np.full_like(batched, np.nan)
    for i, (p, ls) in enumerate(zip(prompts, letters)):
        single[i, : len(ls)] = letter_scores(model, tok, [p], [ls], cpu, batch_size=1)[0]
    assert np.isnan(batched).sum() == np.isnan(single).sum() == 3 * 15  # 5-letter rows padded to 20
    np.testing.assert_allclose(batched, single, atol=1e-4, equal_nan=True)
    # and they are the log-probabilities a plain forward pass gives at the last position
    ids = tok(prompts[0], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, -1], -1)
    np.testing.assert_allclose(batched[0], logprobs[letter_token_ids(tok, letters[0])].numpy(), atol=1e-4)


def test_validate_reranking_reports_ranking_metrics(tiny_model_dir, val_examples):
    pytest.importorskip("instructrec_batch.evaluation.metrics")
    tok = load_tokenizer(tiny_model_dir)
    model = load_causal_lm(tiny_model_dir)
    metrics = validate_reranking(model, tok, as_records(val_examples), torch.device("cpu"), max_users=4)
    assert metrics["n_users"] == 4
    for key in ("HR@1", "HR@5", "NDCG@10", "MRR"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["HR@1"] <= metrics["HR@5"]


def test_multi_token_letters_are_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="tokens"):
        letter_token_ids(load_tokenizer(tiny_model_dir), ["AAAAQQQZ"])
