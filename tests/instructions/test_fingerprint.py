"""The prompts fingerprint (instructions/prompts.py, with_fingerprint): what moves it and what does not."""

from __future__ import annotations

import pandas as pd

from instructrec_batch.instructions.prompts import with_fingerprint


def _row(**changes):
    row = {"user_id": "u", "template_id": "t", "prompt": "Pick one.", "candidate_item_ids": ["a", "b"],
           "candidate_letters": ["A", "B"], "candidate_titles": ["Alpha", "Beta"], "is_fallback": False,
           "candidate_retrieval_ranks": [1, 2], "candidate_popularity": [0.5, 0.25],
           "candidate_reason_item_ids": ["x", None], "candidate_reasons": ["because you bought X", "popular"], "cold_start": False}
    return {**row, **changes}


def _fingerprints(spark, rows, features=("candidate_retrieval_ranks",)):
    frame = spark.createDataFrame(pd.DataFrame(rows))
    return [r["fingerprint"] for r in with_fingerprint(frame, features).orderBy("user_id").collect()]


def test_same_inputs_same_fingerprint_and_any_input_or_reason_moves_it(spark):
    base = _row(user_id="0")
    changed = [_row(user_id="1"), _row(user_id="2", prompt="Pick two."), _row(user_id="3", candidate_item_ids=["b", "a"]),
               _row(user_id="4", candidate_titles=["Alpha", "Beta 2"]), _row(user_id="5", is_fallback=True),
               _row(user_id="6", candidate_retrieval_ranks=[2, 1]),
               _row(user_id="7", candidate_reasons=["because you bought Y", "popular"]), _row(user_id="8", cold_start=True)]
    prints = _fingerprints(spark, [base, *changed])
    assert prints[0] == prints[1], "the user id is not an input: equal rows hash equal"
    assert len(set(prints[1:])) == len(changed) and all(len(p) == 16 for p in prints)


def test_unread_features_do_not_move_it_and_the_feature_set_is_part_of_it(spark):
    rows = [_row(user_id="0"), _row(user_id="1", candidate_popularity=[0.6, 0.2])]
    without_popularity = _fingerprints(spark, rows)
    assert without_popularity[0] == without_popularity[1], "popularity moves nightly; unread, it is not hashed"
    with_popularity = _fingerprints(spark, rows, ("candidate_retrieval_ranks", "candidate_popularity"))
    assert with_popularity[0] != with_popularity[1] and with_popularity[0] != without_popularity[0]
