"""Score fusion: the served score equals the documented formula, and the card round-trips it."""

import numpy as np

from instructrec_batch.model.fusion import FusionParams, Shortlist, fuse
from instructrec_batch.scoring.actor import fused_scores


def test_fused_score_equals_a_hand_computation():
    model = np.array([-2.0, -1.0, -3.0])
    ranks = np.array([1.0, 2.0, np.nan])  # the third was not ranked by the retriever: rank n + 1 = 4
    pop = np.array([0.1, 0.0, 0.5])
    prior = [0.5 * -np.log(1) + 0.2 * np.log(0.1 + 1e-5), 0.5 * -np.log(2) + 0.2 * np.log(0.0 + 1e-5),
             0.5 * -np.log(4) + 0.2 * np.log(0.5 + 1e-5)]
    raw = FusionParams(rank_weight=0.5, popularity_weight=0.2, model_weight=2.0, model_scale="raw")
    np.testing.assert_allclose(fuse(model, ranks, pop, raw), 2.0 * model + prior, rtol=1e-12)
    z = (model - model.mean()) / model.std()  # -> [0, 1.2247, -1.2247]
    params = FusionParams(rank_weight=0.5, popularity_weight=0.2, model_weight=2.0)
    np.testing.assert_allclose(fuse(model, ranks, pop, params), 2.0 * z + prior, rtol=1e-12)
    np.testing.assert_allclose(fuse(model[None], ranks[None], pop[None], params)[0], 2.0 * z + prior, rtol=1e-12)
    similarity = np.array([0.5, np.nan, 0.1])  # NaN: no content evidence, counts as 0
    with_titles = FusionParams(rank_weight=0.5, popularity_weight=0.2, model_weight=2.0, similarity_weight=3.0)
    np.testing.assert_allclose(fuse(model, ranks, pop, with_titles, similarity),
                               2.0 * z + prior + 3.0 * np.array([0.5, 0.0, 0.1]), rtol=1e-12)
    np.testing.assert_allclose(fuse(model, ranks, pop, params, similarity), 2.0 * z + prior, rtol=1e-12)
    embedding = np.array([-0.2, 0.4, np.nan])
    both = FusionParams(rank_weight=0.5, popularity_weight=0.2, model_weight=2.0, similarity_weight=3.0,
                        embedding_weight=1.5)
    np.testing.assert_allclose(fuse(model, ranks, pop, both, similarity, embedding),
                               2.0 * z + prior + 3.0 * np.array([0.5, 0.0, 0.1]) + 1.5 * np.array([-0.2, 0.4, 0.0]),
                               rtol=1e-12)
    # A card without an embedding weight ignores the column, as serving an old card must.
    np.testing.assert_allclose(fuse(model, ranks, pop, with_titles, similarity, embedding),
                               fuse(model, ranks, pop, with_titles, similarity), rtol=1e-12)


def test_standardisation_leaves_padding_and_unscored_entries_alone():
    from instructrec_batch.model.fusion import per_user_z

    out = per_user_z(np.array([[1.0, 3.0, np.nan], [-np.inf, -np.inf, -np.inf], [2.0, 2.0, 2.0]]))
    np.testing.assert_array_equal(out[0, :2], [-1.0, 1.0])
    assert np.isnan(out[0, 2]) and np.isneginf(out[1]).all() and (out[2] == 0).all()


def test_no_fusion_is_the_model_order_and_rows_without_features_stay_model_only():
    model = np.array([-2.0, -1.0, -3.0])
    np.testing.assert_array_equal(fuse(model, np.array([1, 2, 3]), np.zeros(3), None), model)
    params = FusionParams(rank_weight=100.0)
    record = {"candidate_retrieval_ranks": [3, 1, 2], "candidate_popularity": [0.1, 0.2, None]}
    assert list(np.argsort(-fused_scores(record, model, params))) == [1, 2, 0]  # the retriever's order wins
    assert fused_scores({}, model, params) is model  # a partition written before fusion existed
    assert fused_scores(record, model, None) is model  # scoring.fusion: none
    titles = FusionParams(rank_weight=0.0, model_weight=0.0, similarity_weight=1.0)
    assert list(np.argsort(-fused_scores({**record, "candidate_title_similarity": [0.1, 0.0, 0.9]}, model, titles))) == [2, 0, 1]
    # A prompts row written before title similarity existed is fused without it, not model-only.
    np.testing.assert_allclose(fused_scores(record, model, titles), np.zeros(3))
    vectors = FusionParams(rank_weight=0.0, model_weight=0.0, embedding_weight=1.0)
    embedded = {**record, "candidate_embedding_similarity": [0.3, -0.1, 0.2]}
    assert list(np.argsort(-fused_scores(embedded, model, vectors))) == [0, 2, 1]
    # Null where the prompts stage did not compute it: fused without it.
    np.testing.assert_allclose(fused_scores({**record, "candidate_embedding_similarity": None}, model, vectors), np.zeros(3))


def test_fusion_round_trips_through_the_model_card(tmp_path, monkeypatch):
    from instructrec_batch.config import load_config
    from instructrec_batch.model.registry import publish, update_card
    from instructrec_batch.pipeline.stages import choose_model

    cfg = load_config(overrides=[f"model.registry_dir={tmp_path / 'models'}"])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    base = tmp_path / "base"
    base.mkdir()
    import instructrec_batch.model.registry as registry

    # Publishing merges real weights; the card is what this test is about.
    monkeypatch.setattr(registry, "_write_models", lambda adapter_dir, base_dir, out: (out / "merged").mkdir(parents=True))
    version = publish(cfg.model, adapter, base, {})
    params = FusionParams(rank_weight=1.0, popularity_weight=0.05, model_weight=0.7, similarity_weight=1.5,
                          embedding_weight=2.0)
    update_card(cfg.model, version.name, version.version, fusion=params.to_card())
    assert FusionParams.from_card(choose_model(cfg, required=True).fusion) == params
    legacy = FusionParams.from_card({"rank_weight": 3.0, "popularity_weight": 0.5, "model_weight": 1.0})
    assert legacy.model_scale == "raw", "a card fitted before standardisation keeps its raw form"
    assert legacy.similarity_weight == 0.0, "a card fitted before title similarity fuses without it"
    assert legacy.embedding_weight == 0.0, "likewise without embedding similarity"


def test_serving_warns_when_the_fusion_was_fitted_on_other_candidates(caplog):
    from instructrec_batch.config import load_config
    from instructrec_batch.pipeline.stages import ModelChoice, served_fusion

    weights = FusionParams(model_weight=0.2).to_card()
    fitted_on = {m: ModelChoice("m", "v0001", "/m", None, weights, {"method": m}) for m in ("cooccurrence", "merged")}
    merged = load_config(overrides=["retrieval.method=merged"])
    with caplog.at_level("WARNING", logger="instructrec_batch.pipeline.stages"):
        assert served_fusion(merged, fitted_on["merged"]) == weights
        assert not caplog.records
        assert served_fusion(merged, fitted_on["cooccurrence"]) == weights, "the weights still apply"
    assert "retrieval.method=cooccurrence" in caplog.text and "fit-fusion" in caplog.text
    assert served_fusion(load_config(overrides=["scoring.fusion=none"]), fitted_on["cooccurrence"]) is None
    caplog.clear()
    deep = ModelChoice("m", "v0001", "/m", None, weights, {"method": "merged", "pool_depth": 50})
    with caplog.at_level("WARNING", logger="instructrec_batch.pipeline.stages"):
        assert served_fusion(load_config(overrides=["retrieval.pool_depth=50"]), deep) == weights
        assert not caplog.records
        assert served_fusion(load_config(overrides=["retrieval.pool_depth=20"]), deep) == weights
    assert "retrieval.pool_depth=50 (this run: 20)" in caplog.text


def test_the_shortlist_keeps_the_content_order_best_in_pool_order_and_fusion_over_it_matches_the_pool():
    ranks = np.arange(1, 7, dtype=float)
    popularity = np.array([0.1, 0.0, 0.3, 0.0, 0.2, 0.0])
    similarity = np.array([0.0, 0.9, 0.0, 0.1, 0.8, 0.0])
    params = FusionParams(model_weight=1.0, popularity_weight=0.1, similarity_weight=3.0)
    kept = Shortlist(3, params)(ranks, popularity, similarity)
    content = fuse(np.zeros(6), ranks, popularity, FusionParams(**{**params.to_card(), "model_weight": 0.0}), similarity)
    assert kept == sorted(np.argsort(-content, kind="stable")[:3].tolist()) == [0, 1, 4]
    # Model weight 0 over the shortlist (pool ranks kept) orders it as the pool's head: nothing is lost.
    only = fuse(np.zeros(3), ranks[kept], popularity[kept], FusionParams(**{**params.to_card(), "model_weight": 0.0}),
                similarity[kept])
    assert [kept[i] for i in np.argsort(-only, kind="stable")] == np.argsort(-content, kind="stable")[:3].tolist()
    assert Shortlist(3)(ranks, popularity, similarity) == [0, 1, 2], "no fusion: the retriever's first"
    assert Shortlist(10, params)(ranks, popularity, similarity) == list(range(6)), "a short pool stays whole"
