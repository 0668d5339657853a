"""SASRec learns a simple sequential rule that popularity cannot."""

import numpy as np
import pandas as pd
import pytest
import torch

from instructrec_batch.evaluation.baselines import fit_sasrec, popularity_counts, popularity_scores, sasrec_eval_scores
from instructrec_batch.metrics import ranking_metrics
from instructrec_batch.evaluation.protocols import leave_one_out_split, sampled_set
from instructrec_batch.retrieval.sasrec import SASRecParams


def _rule_data(n_users=120, n_items=30, seed=0):
    """Each user walks the catalogue in steps of +1 from a random start: the next item is predictable
    from the last one, while every item is about equally popular."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start, length = int(rng.integers(0, n_items)), int(rng.integers(5, 9))
        for pos in range(length):
            rows.append((f"u{u}", f"i{(start + pos) % n_items}", pos))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "position"]), [f"i{i}" for i in range(n_items)]


@pytest.fixture
def one_thread():
    # A tiny model spends its time in thread hand-offs on a shared CPU; one thread is ~20x faster here.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sasrec_learns_next_item_rule_and_beats_popularity(one_thread):
    interactions, catalogue = _rule_data()
    split = leave_one_out_split(interactions, "test")
    es = sampled_set(split, catalogue, n_negatives=9, seed=1)
    params = SASRecParams(dim=32, max_len=10, n_blocks=1, n_heads=1, dropout=0.1, lr=1e-2, batch_size=64, epochs=12, seed=3)
    model, index, losses = fit_sasrec(split, catalogue, params)
    assert losses[-1] < 0.6 * losses[0]
    sas = ranking_metrics(sasrec_eval_scores((model, index), split, es), es.target_index, ks=(1, 5))
    pop = ranking_metrics(popularity_scores(es, popularity_counts(split.histories)), es.target_index, ks=(1, 5))
    assert sas["HR@1"] > 0.6
    assert sas["NDCG@5"] > pop["NDCG@5"] + 0.3
    # Seeded: a second fit gives the same numbers.
    model2, index2, losses2 = fit_sasrec(split, catalogue, params)
    assert losses2 == losses
    np.testing.assert_allclose(
        sasrec_eval_scores((model2, index2), split, es), sasrec_eval_scores((model, index), split, es)
    )
