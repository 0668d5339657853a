"""Integer codes for ids inside the co-occurrence stage: order-preserving, and decode undoes encode."""

from __future__ import annotations

from instructrec_batch.retrieval.ids import decode, encode, id_codes


def test_codes_follow_the_ids_order_and_decode_undoes_encode(spark):
    frame = spark.createDataFrame([("b", 2), ("a", 1), ("c", 3), ("b", 4), (None, 5)], "item_id string, n int")
    codes = id_codes(frame, "item_id")
    assert sorted(tuple(r) for r in codes.collect()) == [("a", 1), ("b", 2), ("c", 3)]
    for broadcast in (False, True):
        coded = encode(frame, codes, "item_id", broadcast=broadcast)
        assert coded.schema["item_id"].dataType.simpleString() == "int"
        assert sorted(tuple(r) for r in coded.collect()) == [(1, 1), (2, 2), (2, 4), (3, 3)]  # no code: dropped
        back = decode(coded, codes, "item_id", broadcast=broadcast)
        assert back.columns == ["item_id", "n"]
        assert sorted(tuple(r) for r in back.collect()) == [("a", 1), ("b", 2), ("b", 4), ("c", 3)]


def test_decoding_a_null_or_unknown_code_gives_null(spark):
    codes = id_codes(spark.createDataFrame([("a",)], "item_id string"), "item_id")
    coded = spark.createDataFrame([(1,), (None,), (7,)], "item_id int")
    assert sorted(r.item_id or "-" for r in decode(coded, codes, "item_id").collect()) == ["-", "-", "a"]
