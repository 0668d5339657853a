"""Training negatives as serving sees them: drawn from the retrieval stage run on the history before
the target, never the target or any item at or after it, mixed with random ones as configured."""

import random

import pandas as pd

from instructrec_batch.instructions.training import training_negatives


def test_mix_takes_retrieval_first_then_random_and_never_excluded_items():
    rng = random.Random(0)
    catalogue = [f"i{k}" for k in range(100)]
    exclude = {"i0", "i1", "i2"}  # the target and the user's other items
    retrieved = ["i1", "i5", "i6", "i7", "i8"]  # i1 was seen: skipped
    got = training_negatives(rng, 6, retrieved, catalogue, exclude, share=0.5, cum_weights=None)
    assert got[:3] == ["i5", "i6", "i7"] and len(set(got)) == 6 and not set(got) & exclude
    heavy = [float(k < 50) * 1000 + 1 for k in range(100)]  # popularity weights concentrated on i3..i49
    cum = list(pd.Series(heavy).cumsum())
    drawn = training_negatives(random.Random(1), 20, [], catalogue, exclude, share=0.0, cum_weights=cum)
    assert sum(int(x[1:]) < 50 for x in drawn) >= 18


def test_retrieval_negatives_never_hold_the_target_or_a_later_item(spark, cfg, tiny_model_dir):
    from instructrec_batch.instructions import build_training_examples
    from instructrec_batch.pipeline.commands import serving_negatives
    from instructrec_batch.retrieval import leave_one_out

    rng = random.Random(3)
    rows = []
    for u in range(40):  # sequences over a small catalogue, so the retriever has co-occurrences to find
        items = rng.sample(range(30), 8)
        rows += [{"user_id": f"u{u}", "item_id": f"i{x}", "position": p} for p, x in enumerate(items)]
    everyone = spark.createDataFrame(pd.DataFrame(rows))
    items = spark.createDataFrame(pd.DataFrame({"item_id": [f"i{x}" for x in range(30)],
                                                "title": [f"Game {x}" for x in range(30)],
                                                "category": None, "brand": None}).astype({"category": "string", "brand": "string"}))
    cfg.tune = cfg.tune.model_copy(update={"retrieval_negative_share": 1.0, "negative_sampling": "popularity",
                                           "task_mix": {"matching": 1.0}, "n_negatives": 5})
    train_history, _ = leave_one_out(everyone, 2)
    history, targets = leave_one_out(train_history, 1)
    sources = serving_negatives(everyone, history, targets, cfg)
    assert set(sources) == {"retrieved", "later", "popularity"}
    retrieved = sources["retrieved"].toPandas().groupby("user_id")["item_id"].agg(list)
    examples = build_training_examples(history, targets, items, None, str(tiny_model_dir), cfg.instructions,
                                       cfg.tune, seed=1, **sources).toPandas()
    sequences = pd.DataFrame(rows).sort_values("position").groupby("user_id")["item_id"].agg(list)
    from_retrieval = 0
    for ex in examples.itertuples():
        seq = sequences[ex.user_id]
        t = seq.index(ex.target_item_id)
        negatives = [x for x in ex.candidate_item_ids if x != ex.target_item_id]
        assert not set(negatives) & set(seq[t:]), (ex.user_id, negatives, seq[t:])
        assert not set(negatives) & set(seq[:t]), "a seen item is no negative"
        from_retrieval += len(set(negatives) & set(retrieved.get(ex.user_id, [])))
    # share 1.0: every negative is one the retriever proposed (each user has >= 17 eligible of its 20)
    assert len(examples) == 40 and from_retrieval == 5 * len(examples)
