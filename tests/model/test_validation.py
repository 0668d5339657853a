import numpy as np
import pytest
import torch

from instructrec_batch.model.base import load_causal_lm, load_tokenizer
from instructrec_batch.model.batching import as_records
from instructrec_batch.model.validation import served_scores, validate_ranking


def test_verbalizer_validation_scores_are_the_served_letter_log_probabilities(tiny_model_dir, val_examples, train_examples):
    """Tuning validates with the serving scorer itself: each candidate's score is the logit of its letter
    at the prompt's last position (the log-probability up to a per-user constant), whatever the batch
    and prompt lengths."""
    tok = load_tokenizer(tiny_model_dir)
    model = load_causal_lm(tiny_model_dir)
    records = as_records(val_examples)[:3] + as_records(train_examples)[:3]  # different prompt lengths
    cpu = torch.device("cpu")
    batched = served_scores(model, tok, records, "verbalizer", cpu, bf16=False)
    assert np.isnan(batched).sum() == 3 * 15  # 5-letter rows padded to 20
    for i, record in enumerate(records):
        ids = tok(record["prompt"], add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        letters = [tok.encode(x, add_special_tokens=False)[0] for x in record["candidate_letters"]]
        np.testing.assert_allclose(batched[i, : len(letters)], logits[letters].numpy(), atol=1e-4)


def test_validate_ranking_reports_ranking_metrics(tiny_model_dir, val_examples):
    tok = load_tokenizer(tiny_model_dir)
    model = load_causal_lm(tiny_model_dir)
    metrics = validate_ranking(model, tok, as_records(val_examples), torch.device("cpu"), scorer="verbalizer", max_users=4)
    assert metrics["n_users"] == 4
    for key in ("HR@1", "HR@5", "NDCG@10", "MRR"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["HR@1"] <= metrics["HR@5"]


def test_likelihood_validation_ranks_by_each_titles_mean_log_probability(tiny_model_dir):
    """The likelihood validation scores what the served likelihood scorer scores: the mean
    log-probability of each candidate title's tokens right after the (matching) prompt."""
    from tests.model.conftest import make_examples
    from instructrec_batch.metrics import ranking_metrics
    from instructrec_batch.model.validation import likelihood_scores

    tok = load_tokenizer(tiny_model_dir)
    model = load_causal_lm(tiny_model_dir).eval()
    records = as_records(make_examples(tiny_model_dir, 3, seed=4, n_candidates=5, forms=("matching",)))
    scores = likelihood_scores(model, tok, records, torch.device("cpu"), bf16=False)
    assert scores.shape == (3, 5)
    prompt = tok(records[0]["prompt"], add_special_tokens=False)["input_ids"]
    for j, title in enumerate(records[0]["candidate_titles"]):
        ids = tok(title, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + ids])).logits[0].float(), -1)
        by_hand = np.mean([logp[len(prompt) - 1 + k, t].item() for k, t in enumerate(ids)])
        np.testing.assert_allclose(scores[0, j], by_hand, atol=1e-4)
    metrics = validate_ranking(model, tok, records, torch.device("cpu"), scorer="likelihood")
    target = np.array([r["candidate_item_ids"].index(r["target_item_id"]) for r in records])
    assert metrics == {**ranking_metrics(scores, target, ks=(1, 5, 10)), "n_users": 3.0}
    with pytest.raises(ValueError, match="matching-form"):
        validate_ranking(model, tok, [{**r, "task_form": "reranking"} for r in records], torch.device("cpu"),
                         scorer="likelihood")
