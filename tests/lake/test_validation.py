import json

from instructrec_batch.lake import validate_inputs

ITEMS = "item_id string, title string, category string, brand string, description string, price double"
INTER = "user_id string, item_id string, position bigint, event_ts timestamp, rating double, review_title string, review_text string"
INTENTS = "user_id string, text string, event_ts timestamp"


def test_bad_rows_are_quarantined_with_reasons(spark):
    items = spark.createDataFrame(
        [("a", "Alpha", None, None, None, None), ("b", "  ", None, None, None, None), (None, "Nul", None, None, None, None),
         ("a", "Alpha again", None, None, None, None), ("c", "Gamma", None, None, None, None)], ITEMS)
    inter = spark.createDataFrame(
        [("u1", "a", 0, None, None, None, None), ("u1", "c", 1, None, None, None, None),
         ("u1", "zzz", 2, None, None, None, None), ("u1", "b", 3, None, None, None, None),
         (None, "a", 0, None, None, None, None), ("u2", "a", 0, None, None, None, None), ("u2", "c", 0, None, None, None, None)],
        INTER)
    intents = spark.createDataFrame([("u1", "a racing game", None), ("u2", "", None)], INTENTS)
    out = validate_inputs(items, inter, intents)
    reasons = sorted((r.table_name, r.reason) for r in out.quarantine.collect())
    assert reasons == sorted([
        ("items", "item has no title"), ("items", "null item_id"), ("items", "duplicate item_id"),
        ("interactions", "unknown item_id (not in items, or the item was quarantined)"),
        ("interactions", "unknown item_id (not in items, or the item was quarantined)"),
        ("interactions", "null user_id"), ("interactions", "duplicate (user_id, position)"),
        ("intents", "empty intent text"),
    ])
    assert sorted(r.item_id for r in out.items.collect()) == ["a", "c"]
    assert {r.title for r in out.items.collect()} == {"Alpha", "Gamma"}  # first by title order is kept
    assert out.interactions.count() == 3  # u1/a, u1/c, one of u2's two rows at position 0
    assert out.intents.count() == 1
    row = json.loads(next(r.row_json for r in out.quarantine.collect() if r.reason == "null user_id"))
    assert row["item_id"] == "a"  # the row itself travels with its reason
    assert out.items.count() + sum(1 for r in reasons if r[0] == "items") == items.count()  # nothing lost
