"""The nightly stages as lake-in, lake-out steps. Each replaces its run-date partition atomically and
checks its data-quality gate before it writes, so a failing stage leaves the previous output intact.
The logic lives in the library parts (retrieval, instructions, scoring); this module only wires I/O."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..config import Config
from ..errors import GateError
from ..lake import Lake, ValidatedInputs, validate_inputs
from .runs import StageRun, last_succeeded_date

log = logging.getLogger(__name__)


@dataclass
class ModelChoice:
    """Which model a run uses: a registry version when one exists, else the untuned base model."""

    name: str
    version: str
    model_dir: str
    best_template_id: str | None
    fusion: dict | None = None  # the card's fitted score fusion (model/fusion.py), None: model-only
    # The card's record of the candidates the fusion was fitted on (fusion_fit.retrieval: method,
    # pool_depth, retriever); a key absent from it was not recorded.
    fusion_fitted_on: dict = field(default_factory=dict)


def choose_model(cfg: Config, required: bool) -> ModelChoice:
    from ..errors import ModelNotFoundError
    from ..model.base import base_model_dir
    from ..model.registry import resolve

    if cfg.model.version == "base":  # explicit: score with the untuned base model
        return ModelChoice(cfg.model.base.name, "base", str(base_model_dir(cfg.model)), None)
    try:
        mv = resolve(cfg.model)
        card = mv.card or {}
        fitted_on = (card.get("fusion_fit") or {}).get("retrieval") or {}
        return ModelChoice(mv.name, mv.version, str(mv.merged_dir), card.get("best_template_id"), card.get("fusion"),
                           fitted_on)
    except ModelNotFoundError:
        if required:
            raise
        return ModelChoice(cfg.model.base.name, "base", str(base_model_dir(cfg.model)), None)


def served_fusion(cfg: Config, model: ModelChoice) -> dict | None:
    """The fusion weights scoring applies: the model card's, unless ``scoring.fusion: none``. Weights fitted
    on another retrieval method's candidates, or on a pool of another depth (the content weights pick the
    shortlist from it, model/fusion.Shortlist), still apply, with a warning that names the refit."""
    if cfg.scoring.fusion != "model_card":
        return None
    now = {"method": cfg.retrieval.method, "pool_depth": cfg.retrieval.pool_depth}
    fitted = model.fusion_fitted_on
    differ = [f"retrieval.{key}={fitted[key]} (this run: {value})" for key, value in now.items()
              if fitted.get(key) is not None and fitted[key] != value]
    if model.fusion and differ:
        log.warning("the score fusion of %s/%s was fitted on other candidates: %s; it still applies, but refit it "
                    "with `instructrec-batch fit-fusion` (same config)", model.name, model.version, ", ".join(differ))
    return model.fusion


def served_users(candidates: DataFrame, cfg: Config) -> DataFrame:
    """The candidates of the users the nightly scores (``nightly.score_users``): all, or a seeded sample
    that stays the same from night to night while the users stay, so incremental scoring can reuse it."""
    nightly = cfg.nightly
    if nightly.score_users == "all":
        return candidates
    log.info("nightly.score_users=sample: prompts and scores for %d seeded users (nightly.sample_users); "
             "candidates for all", nightly.sample_users)
    chosen = (candidates.select("user_id").distinct()
              .orderBy(F.xxhash64("user_id", F.lit(nightly.sample_seed)), "user_id").limit(nightly.sample_users))
    return candidates.join(chosen, "user_id", "left_semi")


def read_validated_inputs(lake: Lake) -> ValidatedInputs:
    return validate_inputs(lake.read("items"), lake.read("interactions"), lake.read("intents"))


def write_quarantine(lake: Lake, quarantine: DataFrame, run_date: str, stage: str, run_id: str) -> dict[str, int]:
    """Replace this (run date, stage)'s quarantine rows; return counts per table."""
    rows = quarantine.select(
        F.lit(run_date).alias("run_date"), F.lit(stage).alias("stage"), "table_name", "reason", "row_json",
        F.lit(run_id).alias("run_id"),
    ).cache()
    counts = {r["table_name"]: r["count"] for r in rows.groupBy("table_name").count().collect()}
    lake.replace_partition(rows, "quarantine", {"run_date": run_date, "stage": stage})
    rows.unpersist()
    return counts


def check_quarantine_gate(cfg: Config, totals: dict[str, int], bad: dict[str, int]) -> None:
    limit = cfg.nightly.gate.max_quarantine_share
    for table, total in totals.items():
        share = bad.get(table, 0) / total if total else 0.0
        if share > limit:
            raise GateError(
                f"data-quality gate: {bad.get(table, 0)} of {total} rows of '{table}' were quarantined "
                f"({share:.0%} > nightly.gate.max_quarantine_share={limit:.0%}); see the quarantine table. "
                "Nothing was written; the previous output is intact."
            )


def stage_candidates(spark: SparkSession, lake: Lake, cfg: Config, run: StageRun) -> None:
    from ..retrieval import build_candidates, retriever_for
    from ..retrieval.reuse import history_fingerprints, retrieval_key

    raw = {k: lake.read(k) for k in ("items", "interactions", "intents")}
    totals = {k: f.count() for k, f in raw.items()}
    checked = validate_inputs(raw["items"], raw["interactions"], raw["intents"])
    bad = write_quarantine(lake, checked.quarantine, run.run_date, "candidates", run.run_id)
    run.quarantine_count = sum(bad.values())
    check_quarantine_gate(cfg, totals, bad)

    users = checked.interactions.select("user_id").unionByName(checked.intents.select("user_id")).distinct()
    n_users = users.count()
    if n_users < cfg.nightly.gate.min_users:
        raise GateError(
            f"data-quality gate: {n_users} users with clean input < nightly.gate.min_users={cfg.nightly.gate.min_users}; "
            "nothing was written"
        )
    retriever = retriever_for(cfg.retrieval, cfg.model.registry_dir)
    if retriever is not None:
        run.model_version = f"{retriever.name}/{retriever.version}"
    fingerprints = history_fingerprints(checked.interactions, users, retrieval_key(cfg.retrieval, run.model_version))
    kept, kept_users = _kept_candidates(lake, cfg, run.run_date, fingerprints, checked.items)
    fresh_users = users if kept_users is None else users.join(kept_users, "user_id", "left_anti")
    # The whole pool: the prompts stage picks the shortlist the model reranks (model/fusion.Shortlist).
    fresh = (build_candidates(checked.interactions, fresh_users, cfg.retrieval, retriever, n=cfg.retrieval.pool_depth)
             .join(fingerprints, "user_id").withColumn("retrieved_date", F.lit(run.run_date)))
    candidates = (fresh if kept is None else fresh.unionByName(kept)).withColumn("run_date", F.lit(run.run_date))
    lake.replace_partition(candidates, "candidates", {"run_date": run.run_date})
    written = lake.read("candidates", {"run_date": run.run_date})
    n_kept = 0 if kept_users is None else kept_users.count()
    run.row_counts = {"users": n_users, "users_retrieved": n_users - n_kept, "users_kept": n_kept,
                      "candidates": written.count(), **{f"input_{k}": v for k, v in totals.items()}}
    if kept_users is not None:
        kept_users.unpersist()


def _kept_candidates(lake: Lake, cfg: Config, run_date: str, fingerprints: DataFrame,
                     items: DataFrame) -> tuple[DataFrame | None, DataFrame | None]:
    """(rows, users) of the lists kept from the last earlier date whose candidates stage succeeded
    (retrieval/reuse.py); (None, None) when there is none or ``retrieval.reuse_days`` is 0."""
    from ..retrieval.reuse import users_to_keep

    if not cfg.retrieval.reuse_days:
        return None, None
    day_before = (date.fromisoformat(run_date) - timedelta(days=1)).isoformat()
    source = last_succeeded_date(lake, "candidates", day_before)
    if source is None:
        return None, None
    previous = lake.read("candidates", {"run_date": source}).drop("run_date")
    kept_users = users_to_keep(previous, fingerprints, items, run_date, cfg.retrieval.reuse_days).cache()
    log.info("candidates: keeping %d users' lists from %s (interactions and retrieval settings unchanged, "
             "computed within retrieval.reuse_days=%d); retrieving the others", kept_users.count(), source,
             cfg.retrieval.reuse_days)
    return previous.join(kept_users, "user_id", "left_semi"), kept_users


def teacher_model(cfg: Config) -> tuple[str, str]:
    """(folder, label) of the preferences stage's generation model (``preferences.model``)."""
    from ..config import ConfigError
    from ..model.base import base_model_dir

    wanted = cfg.preferences.model
    if wanted == "base":
        return str(base_model_dir(cfg.model)), f"{cfg.model.base.name}/base"
    if wanted == "served":
        model = choose_model(cfg, required=False)
        return model.model_dir, f"{model.name}/{model.version}"
    folder = cfg.resolve(wanted)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"preferences.model={wanted!r} is neither base, served nor a Hugging Face model folder "
                          f"(no config.json in {folder})")
    return str(folder), str(folder)


def stage_preferences(spark: SparkSession, lake: Lake, cfg: Config, run: StageRun) -> None:
    """Write the LLM teacher's sentence for every reviewer whose latest reviews have none from this
    teacher on an earlier date (instructions/teacher.py, scoring/preferences.py); the date's
    partition holds exactly those, so a rerun of the date writes the same users again."""
    import pyarrow.compute as pc

    from ..instructions.teacher import review_inputs
    from ..scoring.preferences import OUTPUT_SCHEMA, date_rows, write_sentences
    from ..scoring.ray_session import ray_session

    model_dir, label = teacher_model(cfg)
    run.model_version = label
    checked = read_validated_inputs(lake)
    inputs = review_inputs(checked.interactions, checked.items, cfg.preferences).cache()
    todo = inputs
    if lake.exists("preferences"):
        done = (lake.read("preferences").where((F.col("run_date") < run.run_date) & (F.col("model") == label))
                .select("user_id", "reviews_fingerprint"))
        todo = inputs.join(done, ["user_id", "reviews_fingerprint"], "left_anti")
    reviewers = todo.toPandas()
    n_reviewers = inputs.count()
    inputs.unpersist()
    log.info("preferences: %d reviewers, %d without a current sentence from %s", n_reviewers, len(reviewers), label)
    # Plain dicts: what Spark's toPandas holds for an array of structs differs between Arrow and not.
    reviewers["reviews"] = [[dict(r.asDict() if hasattr(r, "asDict") else r) for r in rs] for rs in reviewers["reviews"]]
    if len(reviewers):
        with ray_session(cfg.ray):
            written, seconds = write_sentences(cfg, reviewers, model_dir, cfg.scoring.dtype)
    else:  # every sentence is current: no model to load
        written, seconds = OUTPUT_SCHEMA.empty_table(), 0.0
    rows = date_rows(written, run.run_date, label, run.run_id)
    # Empty tables are written too when the table exists: a rerun of the date replaces its partition.
    if rows.preferences.num_rows or lake.exists("preferences"):
        lake.write_arrow(rows.preferences, "preferences", mode="overwrite", partition={"run_date": run.run_date})
    if rows.quarantine.num_rows or lake.exists("quarantine"):
        lake.write_arrow(rows.quarantine, "quarantine", mode="overwrite",
                         partition={"run_date": run.run_date, "stage": "preferences"})
    run.quarantine_count = rows.quarantine.num_rows
    new_tokens = int(pc.sum(written["n_new_tokens"]).as_py() or 0)
    run.row_counts = {"reviewers": n_reviewers, "users_written": rows.preferences.num_rows,
                      "users_unusable": rows.quarantine.num_rows, "users_current": n_reviewers - len(reviewers),
                      "new_tokens": new_tokens, "generation_seconds": round(seconds, 2),
                      "seconds_per_user": round(seconds / len(reviewers), 3) if len(reviewers) else 0.0}


def stage_prompts(spark: SparkSession, lake: Lake, cfg: Config, run: StageRun) -> None:
    from ..instructions import build_prompts, load_template_library
    from ..instructions.teacher import current_preferences, review_inputs
    from ..model.embeddings import catalogue_embedding
    from ..model.fusion import FusionParams, Shortlist
    from ..scoring.incremental import fusion_features_read

    model = choose_model(cfg, required=False)
    run.model_version = f"{model.name}/{model.version}"
    checked = read_validated_inputs(lake)
    candidates = served_users(lake.read("candidates", {"run_date": run.run_date}).drop("run_date"), cfg)
    library = load_template_library(cfg.instructions.templates_path)
    template = library.serving_template(cfg.scoring.scorer, cfg.instructions.inference_template, model.best_template_id)
    teacher = None
    if cfg.instructions.teacher_preferences and lake.exists("preferences"):
        reviews_now = review_inputs(checked.interactions, checked.items, cfg.preferences)
        teacher = current_preferences(lake.read("preferences"), reviews_now, run.run_date)
    fusion = served_fusion(cfg, model)
    features = fusion_features_read(fusion)
    prompts = build_prompts(
        checked.interactions, checked.items, candidates, checked.intents, model.model_dir, cfg.instructions,
        template_id=template, fingerprint_features=features, teacher=teacher,
        embedding=catalogue_embedding(checked.items, cfg) if "candidate_embedding_similarity" in features else None,
        shortlist=Shortlist(cfg.retrieval.n_candidates, FusionParams.from_card(fusion)),
    ).withColumn("run_date", F.lit(run.run_date)).cache()
    stats = prompts.agg(
        F.count("*").alias("users"),
        F.sum(F.col("is_fallback").cast("int")).alias("fallback"),
        F.sum("n_prompt_tokens").alias("tokens"),
    ).first()
    users, fallback = stats["users"], stats["fallback"] or 0
    limit = cfg.nightly.gate.max_fallback_share
    if users and fallback / users > limit:
        raise GateError(
            f"data-quality gate: {fallback} of {users} users have no usable history ({fallback / users:.0%} > "
            f"nightly.gate.max_fallback_share={limit:.0%}); nothing was written"
        )
    lake.replace_partition(prompts, "prompts", {"run_date": run.run_date})
    prompts.unpersist()
    run.row_counts = {"users": users, "fallback_users": fallback, "prompt_tokens": stats["tokens"] or 0}


def stage_score(lake: Lake, cfg: Config, run: StageRun) -> dict:
    from ..scoring import job as scoring_job
    from ..scoring.ray_session import ray_session

    model = choose_model(cfg, required=True)
    run.model_version = f"{model.name}/{model.version}"
    # The rows of users whose inputs did not change come from the last date that scored successfully.
    reuse_from = last_succeeded_date(lake, "score", run.run_date) if cfg.scoring.reuse_unchanged else None
    with ray_session(cfg.ray):
        summary = scoring_job.run(cfg, lake, run.run_date, model.model_dir, model.name, model.version, run_id=run.run_id,
                                  fusion=served_fusion(cfg, model), reuse_from=reuse_from)
    run.row_counts = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    run.quarantine_count = int(summary.get("quarantined_rows", 0))
    return summary
