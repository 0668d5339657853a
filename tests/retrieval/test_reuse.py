"""Which candidate lists the next night keeps (retrieval/reuse.py), on small hand-made frames."""

from __future__ import annotations

import pandas as pd
import pytest

from instructrec_batch.config import RetrievalConfig
from instructrec_batch.retrieval.reuse import history_fingerprints, oldest_reusable_date, retrieval_key, users_to_keep

KEY = retrieval_key(RetrievalConfig(), None)


def _fingerprints(spark, interactions: list[tuple[str, str, int]], users: list[str], key: str = KEY):
    frame = spark.createDataFrame(pd.DataFrame(interactions, columns=["user_id", "item_id", "position"]))
    return history_fingerprints(frame, spark.createDataFrame(pd.DataFrame({"user_id": users})), key)


def _previous(spark, fingerprints, retrieved_date: str, items=("i1", "i2")):
    rows = [(r["user_id"], item, r["retrieval_fingerprint"], retrieved_date)
            for r in fingerprints.collect() for item in items]
    return spark.createDataFrame(pd.DataFrame(rows, columns=["user_id", "item_id", "retrieval_fingerprint", "retrieved_date"]))


def _kept(previous, fingerprints, items, run_date, reuse_days=7):
    return sorted(r["user_id"] for r in users_to_keep(previous, fingerprints, items, run_date, reuse_days).collect())


@pytest.fixture
def items(spark):
    return spark.createDataFrame(pd.DataFrame({"item_id": ["i1", "i2", "i3"]}))


def test_only_users_with_the_same_history_keep_their_list(spark, items):
    history = [("a", "i1", 0), ("a", "i2", 1), ("b", "i2", 0)]
    yesterday = _fingerprints(spark, history, ["a", "b", "c"])  # c: intents only
    previous = _previous(spark, yesterday, "2026-11-20")
    today = _fingerprints(spark, [*history, ("b", "i3", 1)], ["a", "b", "c", "d"])  # b bought, d is new
    assert _kept(previous, today, items, "2026-11-21") == ["a", "c"]


def test_the_order_of_interactions_is_part_of_the_history(spark):
    one = _fingerprints(spark, [("a", "i1", 0), ("a", "i2", 1)], ["a"]).first()["retrieval_fingerprint"]
    swapped = _fingerprints(spark, [("a", "i2", 0), ("a", "i1", 1)], ["a"]).first()["retrieval_fingerprint"]
    assert one != swapped


def test_new_settings_or_retriever_or_an_old_list_or_a_removed_item_recompute(spark, items):
    history = [("a", "i3", 0)]
    fingerprints = _fingerprints(spark, history, ["a"])
    previous = _previous(spark, fingerprints, "2026-11-20")
    assert _kept(previous, fingerprints, items, "2026-11-21") == ["a"]
    other_settings = retrieval_key(RetrievalConfig(recent_items=3), None)
    assert _kept(previous, _fingerprints(spark, history, ["a"], other_settings), items, "2026-11-21") == []
    new_retriever = retrieval_key(RetrievalConfig(), "sasrec-games/v0002")
    assert new_retriever != KEY and retrieval_key(RetrievalConfig(reuse_days=1), None) == KEY
    # Shuffling the follower table instead of broadcasting it gives the same lists (test_candidates.py).
    assert retrieval_key(RetrievalConfig(followers_broadcast_rows=0), None) == KEY
    assert _kept(previous, fingerprints, items, "2026-11-26") == ["a"], "the 7th night of a list computed on 11-20"
    assert _kept(previous, fingerprints, items, "2026-11-27") == [], "an 8th night: recomputed"
    assert _kept(previous, fingerprints, items, "2026-11-21", reuse_days=1) == []
    removed = _previous(spark, fingerprints, "2026-11-20", items=("i1", "gone"))
    assert _kept(removed, fingerprints, items, "2026-11-21") == []


def test_lists_written_before_the_fingerprint_existed_are_recomputed(spark, items):
    fingerprints = _fingerprints(spark, [("a", "i3", 0)], ["a"])
    old = spark.createDataFrame(pd.DataFrame({"user_id": ["a"], "item_id": ["i1"]})).selectExpr(
        "user_id", "item_id", "cast(null as bigint) as retrieval_fingerprint", "cast(null as string) as retrieved_date")
    assert _kept(old, fingerprints, items, "2026-11-21") == []


def test_the_window_starts_reuse_days_minus_one_before():
    assert oldest_reusable_date("2026-12-01", 7) == "2026-11-25"
    assert oldest_reusable_date("2026-12-01", 1) == "2026-12-01"
