"""The tune job's fusion fit on a real small lake: validation users in the retrieval protocol, content
weights fitted on all of them, a subset scored by the model with the served scorer for the model weight,
or the fallback weights when too few items were retrieved."""

import numpy as np

from instructrec_batch.evaluation.fusion import (fit_fusion_for_model, fusion_validation_set, outside_shortlist,
                                                 similarity_matrix)
from instructrec_batch.pipeline.stages import read_validated_inputs
from tests.pipeline.conftest import small_config


def test_fusion_fit_on_a_small_lake_uses_validation_users_and_falls_back_when_few(tmp_path, spark, tiny_model_dir):
    from instructrec_batch.ingest import job as ingest_job
    from instructrec_batch.lake import Lake

    cfg = small_config(tmp_path, tiny_model_dir, users=300, extra=["tune.fusion_users=300", "tune.fusion_model_users=5"])
    lake = Lake(cfg.lake, spark)
    ingest_job.run(spark, lake, cfg)
    checked = read_validated_inputs(lake)
    data = fusion_validation_set(spark, checked.interactions, checked.items, checked.intents, str(tiny_model_dir), cfg)
    es = data.eval_set
    assert es.split == "validation" and es.protocol == "retrieval" and 0 < len(es) <= 300
    assert set(data.scorable.user_ids) == set(es.user_ids[es.target_index >= 0])
    assert es.candidates.shape[1] == cfg.retrieval.pool_depth, "the fit sees the whole pool the nightly retrieves"
    scored = data.model_scored
    assert set(scored.user_ids) <= set(data.scorable.user_ids) and 0 < len(scored) <= 5
    assert len(data.prompts) == len(scored)
    # The prompts keep the shortlist the content weights pick, with the user's item in it.
    kept = data.prompts.set_index("user_id")["candidate_item_ids"]
    assert all(len(kept[u]) == cfg.retrieval.n_candidates for u in scored.user_ids)
    assert all(target in list(kept[u]) for u, target in zip(scored.user_ids, scored.targets))
    # The fit computes title similarities from histories for users without prompts; where the prompts stage
    # wrote them too, both agree (the same titles, the same TitleSimilarity.scores).
    rows = es.has_users(scored.user_ids)
    assert rows.any(), "the small lake must retrieve some validation items for this test to mean anything"
    inside = ~outside_shortlist(es, data.prompts)
    np.testing.assert_array_equal(np.where(inside, data.similarity, 0)[rows], similarity_matrix(es, data.prompts)[rows])
    assert data.similarity.max() > 0, "some candidate shares words with a user's latest titles"
    # The validation item is never in the history the candidates were built from, so it can be one.
    params, record = fit_fusion_for_model(str(tiny_model_dir), data, cfg)
    assert record["users"] == len(es) and record["users_with_item_retrieved"] == len(data.scorable)
    assert record["users_scored_by_model"] == len(scored)
    assert record["fitted"] is (len(data.scorable) >= cfg.tune.fusion_min_users)
    assert record["retrieval"] == {"method": "cooccurrence", "pool_depth": 50, "retriever": None}, \
        "the card says which candidates"
    if not record["fitted"]:
        assert (params.model_weight, params.popularity_weight, params.similarity_weight) == (
            cfg.tune.fusion_fallback_model_weight, cfg.tune.fusion_fallback_popularity_weight,
            cfg.tune.fusion_fallback_similarity_weight)
    cfg.tune.fusion_min_users = 0  # any number of users is enough: the grid decides (and picks the shortlist)
    data = fusion_validation_set(spark, checked.interactions, checked.items, checked.intents, str(tiny_model_dir), cfg)
    assert data.fitted and data.content.model_weight == 0
    params, record = fit_fusion_for_model(str(tiny_model_dir), data, cfg)
    assert record["fitted"] and params.model_weight in cfg.tune.fusion_model_weights
    assert params.similarity_weight in cfg.tune.fusion_similarity_weights
    # Each grid holds the step before it (popularity and similarity 0 is the retrieval order; model weight
    # 0 is the content fusion): a step never does worse on the users it was fitted on.
    content, model = record["content"], record["model"]
    assert content["ndcg@10_fused"] >= content["ndcg@10_retrieval_order"] - 1e-12
    assert model["ndcg@10_fused"] >= model["ndcg@10_content"] - 1e-12
    for step, base, ci in ((content, "ndcg@10_retrieval_order", "fused_minus_retrieval_order_ci95"),
                           (model, "ndcg@10_content", "fused_minus_content_ci95")):
        low, high = step[ci]
        assert low <= step["ndcg@10_fused"] - step[base] <= high, "the CI holds the mean"
