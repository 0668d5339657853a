"""Jobs outside the nightly chain (ingest, tune, evaluate): engines opened and closed here."""

from __future__ import annotations

import logging

from ..config import Config
from ..errors import InstructRecError
from ..lake import Lake
from ..logs import event
from . import runs as run_records
from .nightly import check_run_date
from .stages import write_quarantine

log = logging.getLogger(__name__)


def ingest(cfg: Config, run_date: str | None = None, spark=None) -> dict:
    from ..ingest import job as ingest_job
    from ..spark import spark_session

    run_date = check_run_date(run_date)
    with spark_session(cfg.spark, spark) as spark:
        lake = Lake(cfg.lake, spark)
        with run_records.record_stage(lake, cfg, run_date, "ingest") as run:
            result = ingest_job.run(spark, lake, cfg)
            bad = write_quarantine(lake, result["quarantine"], run_date, "ingest", run.run_id)
            run.quarantine_count = sum(bad.values())
            run.row_counts = result["rows"]
        print(f"lake: {lake.root}  (backend {lake.backend})")
        for table, count in result["rows"].items():
            version = result["versions"].get(table)
            suffix = f"  delta version {version}" if version is not None else ""
            print(f"  {table:<13} {count:>9,} rows{suffix}  quarantined: {bad.get(table, 0):,}" if table != "users"
                  else f"  {'users':<13} {count:>9,}")
        return result


def build_tuning_examples(checked, cfg: Config):
    """Leave-one-out examples from the validated inputs as pandas: the last item of each user is test
    (never used here), the one before is validation, and the one before that is the training target."""
    from ..instructions import build_training_examples
    from ..instructions.templates import SCORER_FORMS
    from ..lake.sampling import seeded_users
    from ..model.base import base_model_dir
    from ..retrieval import leave_one_out

    everyone = checked.interactions
    interactions = everyone
    if cfg.tune.max_train_users:
        users = seeded_users(interactions, cfg.tune.max_train_users, cfg.tune.seed)
        interactions = interactions.join(users, "user_id", "left_semi")
    without_test, _test = leave_one_out(interactions, holdout=1)
    train_history, val_targets = leave_one_out(without_test, holdout=1)
    history_for_train, train_targets = leave_one_out(train_history, holdout=1)
    tokenizer_dir = str(base_model_dir(cfg.model))
    train = build_training_examples(
        history_for_train, train_targets, checked.items, checked.intents, tokenizer_dir, cfg.instructions, cfg.tune,
        seed=cfg.tune.seed, **serving_negatives(everyone, history_for_train, train_targets, cfg),
    ).toPandas()
    # Validation ranks 1 positive + 19 negatives, the protocol we report, in the form the validation
    # scorer reads: reranking prompts (letters) for the verbalizer, matching prompts for likelihood.
    val_tune = cfg.tune.model_copy(update={"task_mix": {SCORER_FORMS[cfg.tune.validation_scorer]: 1.0}})
    val_users = val_targets.join(seeded_users(val_targets, cfg.tune.eval_users, cfg.tune.seed + 1), "user_id", "left_semi")
    val = build_training_examples(
        train_history, val_users, checked.items, checked.intents, tokenizer_dir, cfg.instructions, val_tune,
        seed=cfg.tune.seed + 1,
    ).toPandas()
    return train, val


def serving_negatives(everyone, history_for_train, train_targets, cfg: Config) -> dict:
    """The negatives' sources for training examples (build_training_examples' keyword arguments).

    Retrieval runs as the candidates stage does, on every user's sequence cut before their training
    target (each user's last three items removed): seeds come only from items before the target, and
    no user's validation or test item is in the co-occurrence counts. The user's items after the
    target (validation and test) are excluded from every draw."""
    from pyspark.sql import functions as F

    from ..retrieval import build_candidates, leave_one_out, retriever_for

    t = cfg.tune
    out: dict = {}
    if t.retrieval_negative_share == 0 and t.negative_sampling == "uniform":
        return out
    before_training_targets = leave_one_out(everyone, holdout=3)[0]
    users = train_targets.select("user_id")
    out["later"] = everyone.join(users, "user_id", "left_semi").join(
        history_for_train.select("user_id", "item_id"), ["user_id", "item_id"], "left_anti"
    )
    if t.retrieval_negative_share > 0:
        # holdout 3: the retriever never saw a training target either
        retriever = retriever_for(cfg.retrieval, cfg.model.registry_dir, min_holdout=3)
        out["retrieved"] = build_candidates(before_training_targets, users, cfg.retrieval, retriever)
    if t.negative_sampling == "popularity":  # weights: distinct users per item before the targets
        pop = before_training_targets.groupBy("item_id").agg(F.countDistinct("user_id").alias("users")).collect()
        out["popularity"] = {r.item_id: float(r.users) for r in pop}
    return out


def tune(cfg: Config, spark=None):
    from ..evaluation.fusion import fusion_validation_set
    from ..instructions import load_template_library
    from ..model import job as tune_job
    from ..model.base import base_model_dir
    from ..spark import spark_session
    from .stages import read_validated_inputs

    with spark_session(cfg.spark, spark) as spark:  # a session made here is stopped before training
        lake = Lake(cfg.lake, spark)
        versions = lake.versions(("items", "interactions", "intents"))
        checked = read_validated_inputs(lake)
        train, val = build_tuning_examples(checked, cfg)
        fusion_data = fusion_validation_set(spark, checked.interactions, checked.items, checked.intents,
                                            str(base_model_dir(cfg.model)), cfg)
    event(log, "tune: examples built", train=len(train), validation=len(val))
    library = load_template_library(cfg.instructions.templates_path)
    version = tune_job.run(train, val, cfg, data_versions=versions, template_version=library.version)
    if fusion_data is not None:
        version = _fit_and_store_fusion(cfg, version, fusion_data)
    print(f"published model {version.name}/{version.version} at {version.path}")
    return version


def fit_retriever(cfg: Config, spark=None):
    """Fit SASRec on every user's validated interactions minus their last retrieval.sequential.fit_holdout
    items and publish it beside the language models; the card holds the data versions and the recall
    on held-out items."""
    from ..model.registry import git_commit
    from ..retrieval.sequential import fit_retriever as fit, publish_retriever
    from ..spark import spark_session
    from .stages import read_validated_inputs

    s = cfg.retrieval.sequential
    with spark_session(cfg.spark, spark) as spark:  # a session made here is stopped before training
        lake = Lake(cfg.lake, spark)
        versions = lake.versions(("items", "interactions"))
        checked = read_validated_inputs(lake)
        rows = checked.interactions.select("user_id", "item_id", "position").toPandas()
        catalogue = sorted(set(checked.items.select("item_id").toPandas()["item_id"]) | set(rows["item_id"]))
    rows = rows.sort_values(["user_id", "position", "item_id"], kind="stable")
    sequences = rows.groupby("user_id", sort=True)["item_id"].agg(list).to_dict()
    event(log, "fit-retriever: fitting", users=len(sequences), items=len(catalogue), epochs=s.epochs,
          fit_holdout=s.fit_holdout)
    fitted = fit(sequences, catalogue, s)
    extra = {"data_versions": versions, "config": s.model_dump(mode="json"), "git_commit": git_commit()}
    retriever = publish_retriever(cfg.model.registry_dir, s, fitted, extra)
    recall = fitted["card"]["validation"]
    shown = ", ".join(f"{k} {v:.4f}" for k, v in recall.items() if k.startswith("recall")) or "not measured (fit_holdout=0)"
    print(f"published sequential retriever {retriever.name}/{retriever.version} at {retriever.path}")
    print(f"  fitted on {fitted['card']['users']:,} users in {fitted['card']['fit_seconds']:.0f} s; "
          f"held-out recall on {recall.get('users', 0):,} users: {shown}")
    print(f"  candidates use it when retrieval.method is merged (the default) or sequential; now: {cfg.retrieval.method}")
    return retriever


def fit_fusion(cfg: Config):
    """Fit the score fusion of a published model (model.name / model.version) again, without training:
    after a change of the retrieval config, or for a model tuned before fusion existed."""
    from ..evaluation.fusion import fusion_validation_set
    from ..model.base import base_model_dir
    from ..model.registry import resolve
    from ..spark import spark_session
    from .stages import read_validated_inputs

    version = resolve(cfg.model)
    if not cfg.tune.fusion_users:
        raise InstructRecError("tune.fusion_users is 0: nothing to fit fusion on")
    with spark_session(cfg.spark) as spark:
        checked = read_validated_inputs(Lake(cfg.lake, spark))
        fusion_data = fusion_validation_set(spark, checked.interactions, checked.items, checked.intents,
                                            str(base_model_dir(cfg.model)), cfg)
    return _fit_and_store_fusion(cfg, version, fusion_data)


def _fit_and_store_fusion(cfg: Config, version, fusion_data):
    from ..evaluation.fusion import fit_fusion_for_model
    from ..model.registry import update_card

    params, record = fit_fusion_for_model(str(version.merged_dir), fusion_data, cfg)
    version = update_card(cfg.model, version.name, version.version, fusion=params.to_card(), fusion_fit=record)
    how = "fitted" if record["fitted"] else "NOT fitted (too few users; fallback weights)"
    content, model = record["content"], record["model"]

    def gain(step: dict, base: str, ci: str) -> str:
        low, high = step[ci]  # too few users for a fit are too few for a CI as well
        return f"{step['ndcg@10_fused'] - step[base]:+.4f} (95% CI {low:+.4f} .. {high:+.4f})" if record["fitted"] else "-"

    print(f"fusion of {version.name}/{version.version} {how}: rank weight 1, popularity weight "
          f"{params.popularity_weight}, title similarity weight {params.similarity_weight}, embedding similarity "
          f"weight {params.embedding_weight}, model weight "
          f"{params.model_weight}; NDCG@10 on the validation users " +
          ("the weights were fitted on:" if record["fitted"] else "(too few to fit or to judge):"))
    print(f"  content weights, {record['users']:,} users ({record['users_with_item_retrieved']:,} with their item "
          f"retrieved): retrieval order {content['ndcg@10_retrieval_order']:.4f}, fused {content['ndcg@10_fused']:.4f}, "
          f"{gain(content, 'ndcg@10_retrieval_order', 'fused_minus_retrieval_order_ci95')}")
    print(f"  model weight, {record['users_scored_by_model']:,} of those users scored by the model: retrieval order "
          f"{model['ndcg@10_retrieval_order']:.4f}, content {model['ndcg@10_content']:.4f}, model only "
          f"{model['ndcg@10_model_only']:.4f}, fused {model['ndcg@10_fused']:.4f}, fused - content "
          f"{gain(model, 'ndcg@10_content', 'fused_minus_content_ci95')}")
    return version


def evaluate(cfg: Config):
    from ..evaluation import job as evaluate_job
    from ..spark import spark_session

    with spark_session(cfg.spark) as spark:
        result = evaluate_job.run(spark, Lake(cfg.lake, spark), cfg)
    print(f"report: {result.report_path}")
    return result
