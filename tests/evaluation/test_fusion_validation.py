"""The tune job's fusion fit on a real small lake: validation users in the retrieval protocol, scored by the
model with the served scorer, weights fitted, or the fallback weights when too few items were retrieved."""

from instructrec_batch.evaluation.fusion import fit_fusion_for_model, fusion_validation_set
from instructrec_batch.pipeline.stages import read_validated_inputs
from tests.pipeline.conftest import small_config


def test_fusion_fit_on_a_small_lake_uses_validation_users_and_falls_back_when_few(tmp_path, spark, tiny_model_dir):
    from instructrec_batch.ingest import job as ingest_job
    from instructrec_batch.lake import Lake

    cfg = small_config(tmp_path, tiny_model_dir, users=60, extra=["tune.fusion_users=200"])
    lake = Lake(cfg.lake, spark)
    ingest_job.run(spark, lake, cfg)
    checked = read_validated_inputs(lake)
    data = fusion_validation_set(spark, checked.interactions, checked.items, checked.intents, str(tiny_model_dir), cfg)
    es = data.eval_set
    assert es.split == "validation" and es.protocol == "retrieval" and 0 < len(es) <= 200
    assert set(data.scorable.user_ids) == set(es.user_ids[es.target_index >= 0])
    assert len(data.prompts) == len(data.scorable)
    # The validation item is never in the history the candidates were built from, so it can be one.
    params, record = fit_fusion_for_model(str(tiny_model_dir), data, cfg)
    assert record["users"] == len(es) and record["users_with_item_retrieved"] == len(data.scorable)
    assert record["fitted"] is (len(data.scorable) >= cfg.tune.fusion_min_users)
    assert record["retrieval"] == {"method": "cooccurrence", "retriever": None}, "the card says which candidates"
    if not record["fitted"]:
        assert (params.model_weight, params.popularity_weight) == (cfg.tune.fusion_fallback_model_weight,
                                                                   cfg.tune.fusion_fallback_popularity_weight)
    cfg.tune.fusion_min_users = 0  # any number of users is enough: the grid decides
    params, record = fit_fusion_for_model(str(tiny_model_dir), data, cfg)
    assert record["fitted"] and params.model_weight in cfg.tune.fusion_model_weights
    # The grid holds model weight 0 and popularity 0, the retrieval order itself: a fit never does worse.
    assert record["ndcg@10_fused"] >= record["ndcg@10_retrieval_order"] - 1e-12
    low, high = record["fused_minus_retrieval_order_ci95"]
    assert low <= record["ndcg@10_fused"] - record["ndcg@10_retrieval_order"] <= high, "the CI holds the mean"
