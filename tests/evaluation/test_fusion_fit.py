"""Fitting fusion and judging it: per-user NDCG, the paired bootstrap CI, the grid."""

import numpy as np

from instructrec_batch.evaluation.fusion import fit_fusion, paired_bootstrap_ci
from instructrec_batch.metrics import per_user_ndcg, ranking_metrics


def test_per_user_ndcg_averages_to_the_evaluation_metric():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 20))
    scores[rng.random((200, 20)) < 0.1] = 1.0  # ties: the pessimistic rule applies to both
    target = rng.integers(-1, 20, size=200)
    assert np.isclose(per_user_ndcg(scores, target).mean(), ranking_metrics(scores, target, ndcg_ks=(10,))["NDCG@10"])


def test_paired_bootstrap_ci_on_a_hand_made_example():
    a = np.array([1.0, 0.5, 0.0, 1.0])
    mean, lo, hi = paired_bootstrap_ci(a, a - 0.25)  # a constant difference: no spread at all
    assert (mean, lo, hi) == (0.25, 0.25, 0.25)
    b = np.zeros(400)
    a = np.r_[np.ones(200), -np.ones(200)] * 0.1  # mean 0, sd 0.1: CI about +-1.96 * 0.1 / 20
    mean, lo, hi = paired_bootstrap_ci(a, b, n_resamples=4000, seed=1)
    assert mean == 0.0 and -0.012 < lo < -0.008 and 0.008 < hi < 0.012


def test_the_grid_keeps_the_retriever_order_when_the_model_is_noise():
    rng = np.random.default_rng(3)
    n, c = 300, 20
    model = rng.normal(size=(n, c))
    ranks = np.tile(np.arange(1, c + 1, dtype=float), (n, 1))
    target = np.minimum(rng.geometric(0.4, size=n) - 1, c - 1)  # the retriever's head holds most targets
    params, grid = fit_fusion(model, ranks, np.zeros((n, c)), target, [0.0, 1.0, 100.0], [0.0])
    assert params.model_weight == 0.0 and params.rank_weight == 1.0 and len(grid) == 3
    assert grid.set_index("model_weight")["ndcg"][0.0] > grid.set_index("model_weight")["ndcg"][100.0]


def test_a_popularity_weight_must_gain_more_than_the_tolerance():
    """Popularity that helps a little is dropped under the tolerance and kept when it helps more."""
    rng = np.random.default_rng(5)
    n, c = 400, 20
    ranks = np.tile(np.arange(1, c + 1, dtype=float), (n, 1))
    popularity = rng.uniform(0.001, 0.1, size=(n, c))
    target = np.where(rng.random(n) < 0.5, np.argmax(popularity, axis=1), 5)  # popularity finds half the targets
    model = np.zeros((n, c))
    params, grid = fit_fusion(model, ranks, popularity, target, [0.0], [0.0, 1.0])
    by_pop = grid.set_index("popularity_weight")["ndcg"]
    gain = by_pop[1.0] - by_pop[0.0]
    assert gain > 0 and params.popularity_weight == 1.0
    for tolerance, expected in ((gain * 0.9, 1.0), (gain * 1.1, 0.0)):
        chosen, _ = fit_fusion(model, ranks, popularity, target, [0.0], [0.0, 1.0], tolerance)
        assert chosen.popularity_weight == expected


def test_the_grid_weighs_title_similarity_when_it_finds_targets():
    rng = np.random.default_rng(7)
    n, c = 300, 20
    ranks = np.tile(np.arange(1, c + 1, dtype=float), (n, 1))
    similarity = np.round(rng.uniform(0.0, 0.3, size=(n, c)), 2)
    target = rng.integers(3, c, size=n)
    similarity[np.arange(n), target] = 0.8  # the held-out item shares the latest title's words
    model = np.zeros((n, c))
    params, grid = fit_fusion(model, ranks, np.zeros((n, c)), target, [0.0], [0.0], 0.0, similarity, [0.0, 4.0])
    assert params.similarity_weight == 4.0 and len(grid) == 2
    # The same evidence as an embedding cosine (in [-1, 1]) is weighed on its own axis.
    params, grid = fit_fusion(model, ranks, np.zeros((n, c)), target, [0.0], [0.0], 0.0, None, [0.0],
                              similarity * 2 - 0.6, [0.0, 2.0, 4.0])
    assert params.embedding_weight > 0.0 and params.similarity_weight == 0.0 and len(grid) == 3
    # Without a similarity matrix the grid has no such axis.
    params, grid = fit_fusion(model, ranks, np.zeros((n, c)), target, [0.0], [0.0], 0.0, None, [0.0, 4.0])
    assert params.similarity_weight == 0.0 and len(grid) == 1


def test_similarity_columns_are_read_back_aligned_and_a_null_column_reads_as_zeros():
    import pandas as pd

    from instructrec_batch.evaluation.fusion import similarity_matrix
    from instructrec_batch.evaluation.protocols import EvalSet

    es = EvalSet("retrieval", "test", np.array(["u1", "u2", "u3"], dtype=object),
                 np.array([["a", "b", "c"], ["d", "e", None], ["f", "g", "h"]], dtype=object),
                 np.array([0, 1, -1]), np.array(["a", "e", "x"], dtype=object))
    prompts = pd.DataFrame({  # candidates in the prompts' own (shuffled) order; u3 has no prompts row
        "user_id": ["u1", "u2"], "candidate_item_ids": [["c", "a", "b"], ["e", "d"]],
        "candidate_title_similarity": [[0.3, 0.1, 0.2], [0.5, 0.4]],
        "candidate_embedding_similarity": [[-0.2, 0.6, 0.0], None],  # u2's was not computed
    })
    np.testing.assert_allclose(similarity_matrix(es, prompts), [[0.1, 0.2, 0.3], [0.4, 0.5, 0.0], [0, 0, 0]])
    np.testing.assert_allclose(similarity_matrix(es, prompts, "candidate_embedding_similarity"),
                               [[0.6, 0.0, -0.2], [0, 0, 0], [0, 0, 0]])
    nobody = prompts.assign(candidate_embedding_similarity=[None, None])
    assert not similarity_matrix(es, nobody, "candidate_embedding_similarity").any()
