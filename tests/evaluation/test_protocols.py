"""The protocols on tiny hand-made data: no leaks, seeded and stable."""

import numpy as np
import pandas as pd
import pytest

from instructrec_batch.evaluation.baselines import popularity_counts, popularity_scores, retrieval_order_scores
from instructrec_batch.evaluation.protocols import (
    leave_one_out_split,
    retrieval_set,
    sample_users,
    sampled_set,
)


def _interactions():
    rows = []
    seqs = {"u1": ["a", "b", "c", "d"], "u2": ["b", "c", "e"], "u3": ["a", "f"], "u4": ["g"]}
    for user, items in seqs.items():
        for pos, item in enumerate(items):
            rows.append((user, item, pos * 10))
    # Shuffled on purpose: the order must come from position, not the row order.
    return pd.DataFrame(rows, columns=["user_id", "item_id", "position"]).sample(frac=1, random_state=3)


CATALOGUE = [chr(c) for c in range(ord("a"), ord("z") + 1)]


def test_split_holds_out_last_and_second_to_last():
    test = leave_one_out_split(_interactions(), "test")
    assert list(test.user_ids) == ["u1", "u2", "u3"]  # u4 has no history before its only item
    assert list(test.targets) == ["d", "e", "f"]
    assert test.histories[0] == ["a", "b", "c"]
    val = leave_one_out_split(_interactions(), "validation")
    assert list(val.user_ids) == ["u1", "u2"]
    assert list(val.targets) == ["c", "c"]
    assert val.histories == [["a", "b"], ["b"]]


def test_sampled_protocol_never_leaks_and_is_seeded():
    split = leave_one_out_split(_interactions(), "test")
    es = sampled_set(split, CATALOGUE, n_negatives=19, seed=5)
    assert es.candidates.shape == (3, 20)
    for row, (history, seen) in enumerate(zip(split.histories, split.seen)):
        cands = list(es.candidates[row])
        target = split.targets[row]
        assert target not in history  # the held-out interaction is not in the history
        assert cands[es.target_index[row]] == target
        assert cands.count(target) == 1
        negatives = [c for i, c in enumerate(cands) if i != es.target_index[row]]
        assert len(set(negatives)) == 19 and not set(negatives) & seen  # never an item the user had
    again = sampled_set(split, CATALOGUE, n_negatives=19, seed=5)
    assert (again.candidates == es.candidates).all() and (again.target_index == es.target_index).all()
    # A user's candidates do not depend on which other users are evaluated.
    alone = sampled_set(
        type(split)(split.user_ids[1:], split.histories[1:], split.targets[1:], split.seen[1:]), CATALOGUE, 19, 5
    )
    assert (alone.candidates == es.candidates[1:]).all()
    other_seed = sampled_set(split, CATALOGUE, n_negatives=19, seed=6)
    assert not (other_seed.candidates == es.candidates).all()


def test_retrieval_protocol_marks_misses_and_pads():
    split = leave_one_out_split(_interactions(), "test")
    cands = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2"],
            "item_id": ["x", "d", "y", "e", "z"],
            "retrieval_rank": [1, 2, 3, 2, 1],
        }
    )
    es = retrieval_set(split, cands, n_candidates=3)
    # u1: d has rank 2 -> column 1; u2: ordered by rank (z, e) -> column 1; u3: nothing retrieved -> miss.
    assert list(es.target_index) == [1, 1, -1]
    assert list(es.candidates[1]) == ["z", "e", None]
    assert list(es.candidates[2]) == [None, None, None]


def test_align_and_baseline_scores():
    split = leave_one_out_split(_interactions(), "test")
    cands = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["d", "b"], "retrieval_rank": [1, 2]})
    es = retrieval_set(split, cands, n_candidates=3)
    scored = pd.DataFrame({"user_id": ["u1"], "item_id": ["b"], "score": [0.5]})
    m = es.align(scored)
    assert m[0, 1] == 0.5 and m[0, 0] == -np.inf and np.isnan(m[0, 2]) and np.isnan(m[1]).all()
    pop = popularity_counts(split.histories)
    assert pop["b"] == 2 and "d" not in pop  # held-out targets never count
    ps = popularity_scores(es, pop)
    assert ps[0, 0] == 0 and ps[0, 1] == 2 and np.isnan(ps[0, 2])
    ro = retrieval_order_scores(es)
    assert list(ro[0, :2]) == [-1, -2] and np.isnan(ro[0, 2])
    with pytest.raises(ValueError):
        retrieval_order_scores(sampled_set(split, CATALOGUE, 5, 1))


def test_candidates_frame_keeps_the_order():
    split = leave_one_out_split(_interactions(), "test")
    es = sampled_set(split, CATALOGUE, n_negatives=4, seed=1)
    frame = es.candidates_frame()
    u1 = frame[frame.user_id == "u1"].sort_values("retrieval_rank")
    assert list(u1.item_id) == list(es.candidates[0])
    assert set(frame.columns) >= {"user_id", "item_id", "retrieval_rank", "retrieval_score", "source"}


def test_user_sample_is_stable_and_nested():
    users = [f"u{i}" for i in range(100)]
    a = sample_users(users, 10, seed=3)
    assert list(a) == list(sample_users(list(reversed(users)), 10, seed=3))
    assert set(a) <= set(sample_users(users, 20, seed=3))
    assert len(sample_users(users, 500, seed=3)) == 100


def test_scoring_only_retrieved_users_gives_the_same_metrics():
    from instructrec_batch.evaluation.job import _scores_for, metric_rows

    split = leave_one_out_split(_interactions(), "test")
    cands = pd.DataFrame(
        {"user_id": ["u1", "u1", "u1", "u2", "u2", "u3", "u3"], "item_id": ["x", "d", "y", "e", "z", "x", "y"],
         "retrieval_rank": [1, 2, 3, 2, 1, 1, 2]}
    )
    es = retrieval_set(split, cands, n_candidates=3)
    assert list(es.target_index) == [1, 1, -1]  # u3's target f was not retrieved
    every = np.array([[0.1, 0.9, 0.3], [0.2, 0.1, np.nan], [0.7, 0.4, np.nan]])
    retrieved = es.target_index >= 0
    part = es.subset(es.user_ids[retrieved])
    skipped = _scores_for(es, part, every[retrieved])
    assert list(skipped[2, :2]) == [-np.inf, -np.inf] and np.isnan(skipped[2, 2])
    assert metric_rows(es, skipped, "s", "all") == metric_rows(es, every, "s", "all")


def test_sampled_candidates_take_the_retrieval_stage_order():
    from instructrec_batch.evaluation.fusion import fused_matrix, rank_matrix
    from instructrec_batch.evaluation.protocols import EvalSet, rank_by_retrieval
    from instructrec_batch.model.fusion import FusionParams

    es = EvalSet("sampled", "test", np.array(["u1", "u2"], dtype=object),
                 np.array([["a", "b", "c", "d"], ["b", "e", "a", None]], dtype=object),
                 np.array([1, 0]), np.array(["b", "b"], dtype=object))
    # u1's list holds c (rank 3) and a (rank 40); b and d are not in it: d (9 users) before b (5).
    # u2's list holds nothing; e and a tie on popularity: item id breaks it.
    listed = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["c", "a", "x"], "retrieval_rank": [3, 40, 1]})
    popularity = pd.Series({"b": 5.0, "d": 9.0, "e": 2.0, "a": 2.0})
    ordered = rank_by_retrieval(es, listed, popularity)
    assert ordered.ranks[0].tolist() == [2, 4, 1, 3]
    assert ordered.ranks[1, :3].tolist() == [1, 3, 2] and np.isnan(ordered.ranks[1, 3])
    assert (ordered.candidates == es.candidates).all()  # the prompts' layout (columns) is unchanged
    order = retrieval_order_scores(ordered)
    assert order[0].tolist() == [-2, -4, -1, -3] and np.isnan(order[1, 3])
    assert rank_matrix(ordered.subset(["u2"]))[0, :3].tolist() == [1, 3, 2]  # ranks follow a subset
    # The served score on these ranks, by hand: model 0.5 x z(model) - log(rank), popularity weight 0.
    model = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, np.nan]])
    z = (model[0] - 2.5) / np.std(model[0])
    fused = fused_matrix(ordered, model, [], FusionParams(model_weight=0.5, popularity_weight=0.0))
    np.testing.assert_allclose(fused[0], 0.5 * z - np.log([2, 4, 1, 3]))
    np.testing.assert_allclose(fused[1, :3], -np.log([1, 3, 2]))
    assert np.isnan(fused[1, 3])
