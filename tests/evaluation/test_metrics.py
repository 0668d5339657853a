"""Metrics against rankings worked out by hand."""

import math

import numpy as np
import pytest

from instructrec_batch.metrics import ranking_metrics, strict_ranks, target_ranks


def test_hand_computed_case():
    # user 0: target (col 2) ranked 1st; user 1: target (col 0) ranked 3rd; user 2: target missing.
    scores = np.array(
        [
            [0.1, 0.2, 0.9, 0.0],
            [0.5, 0.7, 0.6, 0.1],
            [0.4, 0.3, 0.2, 0.1],
        ]
    )
    target = np.array([2, 0, -1])
    m = ranking_metrics(scores, target, ks=(1, 3), recall=True)
    assert m["HR@1"] == pytest.approx(1 / 3)
    assert m["HR@3"] == pytest.approx(2 / 3)
    assert m["Recall@3"] == pytest.approx(2 / 3)
    assert m["NDCG@1"] == pytest.approx(1 / 3)
    assert m["NDCG@3"] == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert m["MRR"] == pytest.approx((1 + 1 / 3) / 3)
    assert list(target_ranks(scores, target)) == [1, 3, 0]


def test_ties_are_pessimistic_for_the_target_and_stable_otherwise():
    scores = np.array([[1.0, 1.0, 1.0, 0.0]])
    # The target ties with two others: it ranks after both, whatever its column.
    for col in (0, 1, 2):
        assert target_ranks(scores, np.array([col]))[0] == 3
    ranks = strict_ranks(scores, np.array([1]))
    assert list(ranks[0]) == [1, 3, 2, 4]
    m = ranking_metrics(scores, np.array([0]), ks=(1, 5))
    assert m["HR@1"] == 0.0 and m["MRR"] == pytest.approx(1 / 3)


def test_nan_is_padding_and_users_without_candidates_count_as_misses():
    scores = np.array([[0.3, np.nan, 0.9], [np.nan, np.nan, np.nan]])
    m = ranking_metrics(scores, np.array([0, -1]), ks=(1, 2))
    # user 0: target ranks 2nd among 2 real candidates; user 1: nothing -> 0.
    assert m["HR@1"] == 0.0
    assert m["HR@2"] == pytest.approx(0.5)
    assert m["MRR"] == pytest.approx(0.25)


def test_separate_ndcg_cutoffs_and_input_checks():
    scores = np.array([[0.9, 0.1]])
    m = ranking_metrics(scores, np.array([1]), ks=(1,), ndcg_ks=(2,))
    assert set(m) == {"HR@1", "NDCG@2", "MRR"}
    assert m["NDCG@2"] == pytest.approx(1 / math.log2(3))
    with pytest.raises(ValueError):
        ranking_metrics(scores, np.array([2]))
    with pytest.raises(ValueError):
        ranking_metrics(np.array([[np.nan, 0.1]]), np.array([0]))


def test_random_cases_match_a_plain_numpy_reference():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 8)).astype(float)  # many ties on purpose
    target = rng.integers(-1, 8, size=50)
    m = ranking_metrics(scores, target, ks=(1, 5))
    ranks = target_ranks(scores, target)
    hit = ranks > 0
    assert m["HR@5"] == pytest.approx(np.mean(hit & (ranks <= 5)))
    assert m["MRR"] == pytest.approx(np.mean(np.where(hit, 1 / np.maximum(ranks, 1), 0)))
    ndcg = np.where(hit & (ranks <= 5), 1 / np.log2(np.maximum(ranks, 1) + 1), 0)
    assert m["NDCG@5"] == pytest.approx(ndcg.mean())


def test_equals_torchmetrics_fed_every_user():
    """The per-rank shortcut gives what torchmetrics' module API gives on the full query set."""
    import torch
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG

    rng = np.random.default_rng(1)
    scores = rng.normal(size=(40, 6))
    target = rng.integers(0, 6, size=40)
    m = ranking_metrics(scores, target, ks=(1, 3))
    preds = torch.from_numpy(scores.ravel())
    truth = torch.zeros(scores.shape, dtype=torch.bool)
    truth[torch.arange(40), torch.from_numpy(target)] = True
    idx = torch.arange(40).repeat_interleave(6)
    assert m["HR@3"] == pytest.approx(float(RetrievalHitRate(top_k=3)(preds, truth.ravel(), indexes=idx)))
    assert m["NDCG@3"] == pytest.approx(float(RetrievalNormalizedDCG(top_k=3)(preds, truth.ravel(), indexes=idx)))
    # MRR module needs positive preds; shift keeps the order.
    assert m["MRR"] == pytest.approx(float(RetrievalMRR()(preds - preds.min() + 1, truth.ravel(), indexes=idx)))


def test_paired_table_reports_each_system_against_the_baseline_on_the_same_users():
    from instructrec_batch.evaluation.report import paired_table

    target = np.array([0, 0, 0, 0])
    perfect = np.array([[1.0, 0.0, 0.0]] * 4)  # the target first for every user
    last = np.array([[0.0, 1.0, 2.0]] * 4)  # the target third for every user
    table = paired_table({"worst": last, "best": perfect}, target, baseline="worst").splitlines()
    assert table[0] == "| system | HR@10 | NDCG@10 | NDCG@10 - worst (95% CI) |"
    assert table[2] == "| worst | 1.0000 | 0.5000 |  |"
    # NDCG 1 - 1/log2(4) = 0.5 for every user: no spread, so the interval is the point
    assert table[3] == "| best | 1.0000 | 1.0000 | +0.5000 (+0.5000 .. +0.5000) |"
