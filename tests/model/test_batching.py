import numpy as np
import pytest
import torch

from instructrec_batch.model.base import load_causal_lm, load_tokenizer
from instructrec_batch.model.batching import Encoded, as_records, collate, encode_examples, micro_batch_indices
from instructrec_batch.model.loss import TuneLoss


def test_collate_marks_the_positions_that_predict_answer_tokens():
    batch = collate([Encoded([5, 6, 7], ([8],)), Encoded([1, 2, 3, 4], ([9, 10],))], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 0, 0], [1, 2, 3, 4, 9, 10]]
    assert batch["blocks"].tolist() == [[0, 0, 0, 1, -1, -1], [0, 0, 0, 0, 1, 1]]
    # row 0: answer token 8 at position 3 is predicted from position 2; row 1: tokens 9, 10 from 3, 4
    assert batch["token_rows"].tolist() == [0, 1, 1]
    assert batch["token_cols"].tolist() == [2, 3, 4]
    assert batch["token_ids"].tolist() == [8, 9, 10]
    assert batch["target_segments"].tolist() == [0, 1]


def test_collate_packs_negatives_after_the_prompt_at_the_same_positions():
    batch = collate([Encoded([1, 2, 3], ([7, 8], [9], [4, 5, 6]))], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 7, 8, 9, 4, 5, 6]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 3, 3, 4, 5]]
    assert batch["blocks"].tolist() == [[0, 0, 0, 1, 1, 2, 3, 3, 3]]
    # every answer's first token is predicted from the prompt's last position (2)
    assert batch["token_cols"].tolist() == [2, 3, 2, 2, 6, 7]
    assert batch["token_segments"].tolist() == [0, 0, 1, 2, 2, 2]
    assert batch["segment_rows"].tolist() == [0, 0, 0]


def test_micro_batches_are_a_function_of_the_step_and_split_ranks():
    n = 10
    one = [micro_batch_indices(n, s, m, 2, 2, 0, 1, seed=3) for s in range(5) for m in range(2)]
    again = [micro_batch_indices(n, s, m, 2, 2, 0, 1, seed=3) for s in range(5) for m in range(2)]
    assert all((a == b).all() for a, b in zip(one, again))
    # the first epoch (steps 0-1 plus half of step 2) is a permutation: every example once
    first_epoch = np.concatenate(one)[:n]
    assert sorted(first_epoch.tolist()) == list(range(n))
    r0 = micro_batch_indices(n, 0, 0, 2, 1, 0, 2, seed=3)
    r1 = micro_batch_indices(n, 0, 0, 2, 1, 1, 2, seed=3)
    assert not set(r0) & set(r1)


def test_long_examples_are_dropped_not_truncated(tiny_model_dir, train_examples):
    tok = load_tokenizer(tiny_model_dir)
    records = as_records(train_examples)
    encoded = encode_examples(records, tok, max_tokens=10_000, append_eos=True)
    assert len(encoded) == len(records)
    assert all(e.answers[0][-1] == tok.eos_token_id for e in encoded)
    limit = sorted(e.n_tokens for e in encoded)[len(encoded) // 2]
    assert 0 < len(encode_examples(records, tok, max_tokens=limit, append_eos=True)) < len(records)
    with pytest.raises(ValueError, match="max_tokens"):
        encode_examples(records, tok, max_tokens=5, append_eos=True)


def test_answer_loss_is_the_mean_of_each_examples_labels_loss(tiny_model_dir, train_examples):
    """Gathering the answer positions before lm_head must give, per example, the plain `labels=` loss
    of transformers (which projects every position), and the batch loss is the mean of those: a long
    answer does not count more than a one-letter one."""
    tok = load_tokenizer(tiny_model_dir)
    model = load_causal_lm(tiny_model_dir)
    records = as_records(train_examples)[:4]
    records[0] = {**records[0], "answer": "Super Mario Odyssey - Nintendo Switch"}  # a matching-form title
    encoded = encode_examples(records, tok, 10_000, append_eos=True)
    assert len({len(e.answers[0]) for e in encoded}) > 1
    batch = collate(encoded, tok.pad_token_id)
    theirs = []
    with torch.no_grad():
        ours = TuneLoss(model)(**batch)
        for e in encoded:
            ids = torch.tensor([e.prompt_ids + e.answers[0]])
            labels = torch.full_like(ids, -100)
            labels[0, len(e.prompt_ids) :] = ids[0, len(e.prompt_ids) :]
            theirs.append(model(input_ids=ids, labels=labels).loss)
    assert torch.allclose(ours, torch.stack(theirs).mean(), atol=1e-5)


def test_ranking_loss_is_the_softmax_over_each_titles_own_mean_log_prob(tiny_model_dir):
    """A matching example packed with negatives: every title scored as if it alone followed the prompt
    (one plain forward per title here), the loss = -target score + CE of the target among the scores."""
    from tests.model.conftest import make_examples

    tok = load_tokenizer(tiny_model_dir)
    model = load_causal_lm(tiny_model_dir)
    records = as_records(make_examples(tiny_model_dir, 2, seed=4, n_candidates=5, forms=("matching",)))
    encoded = encode_examples(records, tok, 10_000, append_eos=True, ranking_negatives=3)
    assert [len(e.answers) for e in encoded] == [4, 4]
    temperature = 0.5
    with torch.no_grad():
        ours = TuneLoss(model, ranking_weight=2.0, temperature=temperature)(**collate(encoded, tok.pad_token_id))
        theirs = []
        for e in encoded:
            scores = []
            for title in e.answers:
                ids = torch.tensor([e.prompt_ids + title])
                logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
                picked = logp[len(e.prompt_ids) - 1 :].gather(1, ids[0, len(e.prompt_ids) :, None])
                scores.append(picked.mean())
            scores = torch.stack(scores)
            theirs.append(-scores[0] + 2.0 * torch.nn.functional.cross_entropy(scores[None] / temperature,
                                                                               torch.tensor([0])))
    assert torch.allclose(ours, torch.stack(theirs).mean(), atol=1e-5)
    # the negatives are the example's own titles other than the target, in its order
    first = records[0]
    negatives = [t for x, t in zip(first["candidate_item_ids"], first["candidate_titles"]) if x != first["target_item_id"]]
    assert encoded[0].answers[1] == tok(negatives[0], add_special_tokens=False)["input_ids"]
