"""``run``: the evaluate job's one call. Coordinates; the logic lives in the pure modules.

Life cycle: read the lake → leave-one-out split (checked against retrieval's Spark split) → evaluation
sets per protocol → non-LLM systems on every test user → template feedback on validation users (tuned
model) → LLM systems on the seeded user sample → metric rows → ``eval_runs`` (one Delta commit) →
report folder.

Rows in ``eval_runs``: ``protocol`` is ``<protocol>/<population>``: ``sampled/all``,
``sampled/llm_sample``, ``retrieval/all``, ``retrieval/llm_sample``, and ``template_feedback/validation``
(system ``<scorer>[<template id>]``). Compare systems only within one protocol value: those rows were
computed on the same users and candidates.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import Config
from ..errors import InstructRecError, ModelNotFoundError
from ..instructions.templates import SCORER_FORMS
from ..lake import Lake
from ..metrics import per_user_ndcg, ranking_metrics, target_ranks
from ..model.fusion import FusionParams, Shortlist
from .baselines import fit_sasrec, popularity_counts, popularity_scores, retrieval_order_scores, sasrec_eval_scores
from .fusion import fused_matrix, paired_bootstrap_ci
from .protocols import EvalSet, Split, leave_one_out_split, retrieval_set, sample_users, sampled_set
from .report import write_report

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

NON_LLM = ("popularity", "retrieval", "sasrec")
# fused_without_model: the tuned model's fusion with its model term dropped (retrieval rank, popularity
# and title similarity at the card's weights): what the served list would be without a model pass, so
# tuned_fused - fused_without_model is what the model stage adds. It reads the prompts, not the model.
LLM = ("base_zero_shot", "tuned_verbalizer", "tuned_likelihood", "tuned_fused", "fused_without_model")
# The systems that score with the tuned model's weights, and all that read its card (fused_without_model
# reads the card's fusion and the prompts alone).
TUNED_PASSES = ("tuned_verbalizer", "tuned_likelihood", "tuned_fused")
TUNED = (*TUNED_PASSES, "fused_without_model")

# What each protocol reports (MRR is kept for both as a threshold-free summary).
PROTOCOL_METRICS = {
    "sampled": dict(ks=(1, 5, 10), ndcg_ks=(5, 10)),
    "retrieval": dict(ks=(10, 20), recall=True, hit_rate=False, ndcg_ks=(10, 20)),
}


@dataclass
class EvalResult:
    run_id: str
    table: pd.DataFrame  # the rows appended to eval_runs
    report_path: Path
    best_template_id: str | None = None
    eval_runs_version: int | None = None
    notes: list[str] = field(default_factory=list)


# ── pure pieces ──────────────────────────────────────────────────────────────────────────────
def metric_rows(eval_set: EvalSet, scores: np.ndarray, system: str, population: str) -> list[dict]:
    """Long rows (protocol, population, system, metric, value, n_users) for one system's scores."""
    values = ranking_metrics(scores, eval_set.target_index, **PROTOCOL_METRICS[eval_set.protocol])
    return [
        {
            "protocol": eval_set.protocol,
            "population": population,
            "system": system,
            "metric": metric,
            "value": float(value),
            "n_users": len(eval_set),
        }
        for metric, value in values.items()
    ]


def rows_on(eval_set: EvalSet, scores: np.ndarray, system: str, populations: dict[str, np.ndarray]) -> list[dict]:
    """The same system's rows on each population (a population is a set of user ids)."""
    out = []
    for population, users in populations.items():
        keep = eval_set.has_users(users)
        out += metric_rows(eval_set.rows(keep), scores[keep], system, population)
    return out


def per_user_table(matrices: dict, users: np.ndarray) -> pd.DataFrame:
    """protocol, system, user_id, target_rank, NDCG@10 of every stored system on the given users:
    the per-user values the paired confidence intervals are computed from (kept in the report)."""
    parts = []
    for (protocol, system), (es, scores) in sorted(matrices.items()):
        keep = es.has_users(users)
        parts.append(pd.DataFrame({
            "protocol": protocol, "system": system, "user_id": es.user_ids[keep],
            "target_rank": target_ranks(scores[keep], es.target_index[keep]),
            "NDCG@10": per_user_ndcg(scores[keep], es.target_index[keep]),
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# The served system first, then the nearest stand-ins: the fusion without its model term is what scoring
# serves when the card's model weight is 0 (it then skips the model pass, model/fusion.needs_model_pass).
SERVED_SYSTEMS = ("tuned_fused", "fused_without_model", "tuned_likelihood")


def paired_notes(per_user: pd.DataFrame, seed: int) -> list[str]:
    """For the served system (the first of ``SERVED_SYSTEMS`` evaluated): its paired NDCG@10 difference
    to every other system on the same users, with a bootstrap 95% CI."""
    notes = []
    if per_user.empty:
        return notes
    for protocol, group in per_user.groupby("protocol", sort=True):
        wide = group.pivot(index="user_id", columns="system", values="NDCG@10")
        served = next((s for s in SERVED_SYSTEMS if s in wide.columns), None)
        if served is None:
            continue
        for other in sorted(c for c in wide.columns if c != served):
            mean, lo, hi = paired_bootstrap_ci(wide[served].to_numpy(), wide[other].to_numpy(), seed=seed)
            verdict = "above" if lo > 0 else ("below" if hi < 0 else "not distinguishable from")
            notes.append(f"{protocol}: NDCG@10 {served} - {other} = {mean:+.4f} (95% CI {lo:+.4f} .. {hi:+.4f}, "
                         f"{len(wide)} paired users): {verdict} {other}")
    return notes


def check_split_agrees(split: Split, spark_targets: pd.DataFrame) -> None:
    """The prompts' history comes from retrieval's Spark split and the candidates from this module's
    pandas split; if they disagreed on any user's target, a prompt could show the answer."""
    ours = pd.Series(split.targets, index=split.user_ids, dtype=object).sort_index()
    theirs = spark_targets.set_index("user_id")["item_id"].astype(object).sort_index()
    if not ours.index.equals(theirs.index) or not (ours.values == theirs.values).all():
        raise InstructRecError(
            "the evaluation split and retrieval.leave_one_out disagree on held-out items; refusing to "
            "evaluate (a prompt could contain its own target)"
        )


def pick_template(scores_by_template: dict[str, float]) -> str:
    """Highest validation metric; ties go to the smallest id, so reruns agree."""
    return sorted(scores_by_template.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


# ── the job ──────────────────────────────────────────────────────────────────────────────────
@contextmanager
def _timed(timings: dict[str, float], step: str):
    started = time.time()
    yield
    timings[step] = time.time() - started
    log.info("%s: %.1f s", step, timings[step])


def _sasrec_for_test_users(cfg: Config, test: Split, catalogue: list[str], timings: dict, notes: list[str]):
    """The SASRec row's (model, index): the published retriever that retrieval.method serves with, when it
    never saw a test item (fit_holdout >= 1), so the row measures the model the nightly uses and a full
    lake skips a fresh fit (15 epochs, ~20 min on 2 cores, README "Retrieval"); otherwise one fitted here
    on the test histories minus their last item."""
    from ..retrieval import retriever_for
    from ..retrieval.sequential import load_retriever, sasrec_params

    try:
        published = retriever_for(cfg.retrieval, cfg.model.registry_dir, min_holdout=1)
    except ModelNotFoundError as err:
        published = None
        notes.append(f"SASRec: fitted here, the published retriever cannot serve ({err})")
    if published is not None:
        with _timed(timings, "sasrec load"):
            model, index = load_retriever(str(published.path))
        notes.append(f"SASRec: the published retriever {published.name}/{published.version} "
                     f"(fit_holdout {published.fit_holdout}: it never saw a test item)")
        return model, index
    with _timed(timings, "sasrec train"):
        model, index, losses = fit_sasrec(test, catalogue, sasrec_params(cfg.retrieval.sequential))
    notes.append(f"SASRec loss by epoch: {losses[0]:.3f} → {losses[-1]:.3f} ({len(losses)} epochs)")
    return model, index


def _retrieval_ordered_sets(spark, cfg: Config, history, targets, test: Split, sampled: EvalSet | None,
                            notes: list[str]) -> dict[str, EvalSet]:
    """The retrieval protocol's set (the retrieval stage's top-N of every test user), and the sampled set
    with the retrieval stage's order of its candidates (``protocols.rank_by_retrieval``), from one list
    per user deep enough to hold every item a personal source offers (``2 * merge_depth``); beyond it
    the stage's order is popularity's, its back-fill. The sampled set then measures the served score
    (model fused with retrieval rank) and the retrieval order too; without a retriever that never saw a
    test item it stays unordered (its fused row is the model alone), and the notes say why."""
    from ..retrieval import build_candidates, retriever_for
    from .protocols import rank_by_retrieval

    e, r = cfg.evaluation, cfg.retrieval
    out: dict[str, EvalSet] = {}
    if not {"retrieval", "tuned_fused"} & set(e.systems):
        sampled = None  # no system uses the order of sampled candidates: spare the Spark work
    if "retrieval" not in e.protocols and sampled is None:
        return out
    try:
        retriever = retriever_for(r, cfg.model.registry_dir, min_holdout=1)  # never saw a test item
    except ModelNotFoundError as err:
        if "retrieval" in e.protocols:
            raise
        notes.append(f"sampled: candidates not ordered by retrieval ({err}): its tuned_fused row is the model alone")
        return {"sampled": sampled}
    depth = max(r.pool_depth, 2 * r.merge_depth) if sampled is not None else r.pool_depth
    lists = build_candidates(history, targets.select("user_id"), r, retriever, n=depth)
    lists = lists.select("user_id", "item_id", "retrieval_rank").cache()
    try:
        if sampled is not None:
            pairs = spark.createDataFrame(sampled.candidates_frame()[["user_id", "item_id"]])
            listed = lists.join(pairs, ["user_id", "item_id"]).toPandas()
            out["sampled"] = rank_by_retrieval(sampled, listed, popularity_counts(test.histories))
            notes.append(f"sampled: candidates ordered as the retrieval stage would ({r.method}; its top "
                         f"{depth}, then popularity): {len(listed) / max(1, len(sampled)):.2f} of the "
                         f"{sampled.candidates.shape[1]} candidates per user are in that list")
        if "retrieval" in e.protocols:
            # The pool the nightly retrieves: every system reranks it; the served one its shortlist.
            top = lists.where(lists.retrieval_rank <= r.pool_depth).toPandas()
            out["retrieval"] = retrieval_set(test, top, r.pool_depth)
    finally:
        lists.unpersist()
    return out


def run(spark: "SparkSession", lake: Lake, cfg: Config) -> EvalResult:
    from ..retrieval import leave_one_out

    e = cfg.evaluation
    if e.template_metric not in ranking_metrics(np.zeros((1, 2)), np.zeros(1, dtype=int), **PROTOCOL_METRICS["sampled"]):
        raise InstructRecError(f"evaluation.template_metric={e.template_metric!r} is not a sampled-protocol metric")
    unknown = set(e.systems) - set(NON_LLM) - set(LLM)
    if unknown:
        raise InstructRecError(f"evaluation.systems: unknown {sorted(unknown)}; known: {list(NON_LLM + LLM)}")
    run_id = f"eval-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    timings: dict[str, float] = {}
    notes: list[str] = []
    input_versions = lake.versions(["items", "interactions", "intents"])

    with _timed(timings, "read and split"):
        interactions = lake.read("interactions")
        items = lake.read("items")
        intents = lake.read("intents") if e.use_intents else None
        inter_pd = interactions.select("user_id", "item_id", "position").toPandas()
        catalogue = items.select("item_id").toPandas()["item_id"].tolist()
        test = leave_one_out_split(inter_pd, "test")
        if not len(test.user_ids):
            raise InstructRecError("no user has two or more interactions: nothing to evaluate")
        history, targets = leave_one_out(interactions, 1)
        check_split_agrees(test, targets.toPandas())

    sets: dict[str, EvalSet] = {}
    if "sampled" in e.protocols:
        with _timed(timings, "sampled candidates"):
            sets["sampled"] = sampled_set(test, catalogue, e.n_negatives, e.seed)
    with _timed(timings, "retrieval candidates"):
        sets.update(_retrieval_ordered_sets(spark, cfg, history, targets, test, sets.get("sampled"), notes))
    if "retrieval" in sets:
        position = sets["retrieval"].target_index
        r = cfg.retrieval
        notes.append(f"retrieval protocol: every system ranks the retrieval stage's pool of {r.pool_depth}; the target "
                     f"is in it for {np.mean(position >= 0):.1%} of test users (in its top {r.n_candidates} for "
                     f"{np.mean((position >= 0) & (position < r.n_candidates)):.1%}); the served systems rerank "
                     f"the {r.n_candidates} the card's content fusion picks from it")

    llm_users = sample_users(test.user_ids, e.llm_users, e.seed)
    populations = {"llm_sample": llm_users}
    if e.all_users:
        populations["all"] = test.user_ids
    rows: list[dict] = []
    matrices: dict[tuple[str, str], tuple[EvalSet, np.ndarray]] = {}  # (protocol, system) -> scores

    # ── non-LLM systems (every test user) ──
    if "popularity" in e.systems:
        popularity = popularity_counts(test.histories)
        for protocol, es in sets.items():
            matrices[protocol, "popularity"] = (es, popularity_scores(es, popularity))
            rows += rows_on(es, matrices[protocol, "popularity"][1], "popularity", populations)
    if "retrieval" in e.systems:
        for protocol, es in sets.items():
            if es.ranks is not None:
                matrices[protocol, "retrieval"] = (es, retrieval_order_scores(es))
                rows += rows_on(es, matrices[protocol, "retrieval"][1], "retrieval", populations)
    if "sasrec" in e.systems:
        model, index = _sasrec_for_test_users(cfg, test, catalogue, timings, notes)
        with _timed(timings, "sasrec score"):
            for protocol, es in sets.items():
                matrices[protocol, "sasrec"] = (es, sasrec_eval_scores((model, index), test, es))
                rows += rows_on(es, matrices[protocol, "sasrec"][1], "sasrec", populations)

    # ── LLM systems (the seeded sample) ──
    best_template, model_version = None, None
    wanted_llm = [s for s in LLM if s in e.systems]
    if wanted_llm:
        best_template, model_version, llm_rows = _llm_systems(
            spark, cfg, interactions, history, items, intents, inter_pd, catalogue, test, sets, llm_users,
            wanted_llm, timings, notes, matrices,
        )
        rows += llm_rows

    results = pd.DataFrame(rows)
    table = _eval_runs_rows(results, run_id, cfg, input_versions, model_version)
    version = lake.write_arrow(pa.Table.from_pandas(table, preserve_index=False), "eval_runs", mode="append")

    header = {
        "run id": run_id,
        "dataset": _dataset(cfg),
        "input Delta versions": json.dumps(input_versions),
        "test users": f"{len(test.user_ids)} (LLM sample: {len(llm_users)}, seed {e.seed})",
        "tuned model": model_version or "not evaluated",
        "best template (tuned model)": best_template or "none recorded",
        "config hash": cfg.hash(),
        "eval_runs version": str(version),
        "ties": "pessimistic: the target ranks after every candidate with an equal score",
    }
    report_dir = cfg.resolve(e.report_dir) / run_id
    per_user = per_user_table(matrices, llm_users)
    notes += paired_notes(per_user, e.seed)
    report = write_report(report_dir, results, header, notes, timings)
    if len(per_user):
        per_user.to_parquet(report_dir / "per_user.parquet", index=False)
    log.info("evaluation %s: %d rows in eval_runs (version %s), report %s", run_id, len(table), version, report)
    return EvalResult(run_id, table, report, best_template, version, notes)


def _dataset(cfg: Config) -> str:
    return "+".join(cfg.ingest.sources)


def _eval_runs_rows(results: pd.DataFrame, run_id: str, cfg: Config, versions: dict, model_version: str | None) -> pd.DataFrame:
    now = pd.Timestamp.now(tz="UTC")
    base_name = cfg.model.base.name

    def row_model(system: str) -> str | None:
        if system in TUNED:
            return model_version
        return base_name if system == "base_zero_shot" else None

    return pd.DataFrame(
        {
            "run_id": run_id,
            "dataset": _dataset(cfg),
            "input_versions": json.dumps(versions, sort_keys=True),
            "protocol": results["protocol"] + "/" + results["population"],
            "system": results["system"],
            "metric": results["metric"],
            "value": results["value"].astype(np.float64),
            "n_users": results["n_users"].astype(np.int64),
            "model_version": [row_model(s) for s in results["system"]],
            "config_hash": cfg.hash(),
            "created_at": now,
        }
    )


def _llm_systems(spark, cfg, interactions, history, items, intents, inter_pd, catalogue, test, sets, llm_users,
                 wanted, timings, notes, matrices):
    """Template feedback, then the LLM rows; returns (tuned model's best template, its label, rows)."""
    from ..instructions import load_template_library
    from ..model.base import base_model_dir
    from ..model.registry import resolve, update_card
    from ..model.embeddings import catalogue_embedding
    from .llm import build_eval_prompts, llm_scores, load_model, served_scorer

    e = cfg.evaluation
    rows: list[dict] = []
    tuned = None
    if any(s in TUNED for s in wanted):
        try:
            tuned = resolve(cfg.model)
        except ModelNotFoundError as exc:
            notes.append(f"tuned model rows skipped: {exc}")
            wanted = [s for s in wanted if s not in TUNED]
    label = f"{tuned.name}:{tuned.version}" if tuned else None
    # No tuned system that scores: no weights to load, no template feedback.
    scores_tuned = tuned is not None and any(s in TUNED_PASSES for s in wanted)
    tuned_model = load_model(label, tuned.merged_dir, cfg) if scores_tuned else None
    tokenizer_dir = str(tuned.merged_dir if tuned else base_model_dir(cfg.model))

    best = tuned.card.get("best_template_id") if tuned else None
    if scores_tuned and e.template_feedback:
        with _timed(timings, "template feedback"):
            best, feedback_rows, skipped = _template_feedback(
                spark, cfg, interactions, items, intents, inter_pd, catalogue, tuned_model, tokenizer_dir
            )
        rows += feedback_rows
        if skipped:
            notes.append(f"template feedback: {len(skipped)} templates fell back for every validation user "
                         f"(no reviews/intents) and were not scored: {', '.join(skipped)}")
        update_card(cfg.model, tuned.name, tuned.version, best_template_id=best,
                    template_feedback={r["system"]: r["value"] for r in feedback_rows if r["metric"] == e.template_metric})
        notes.append(f"template feedback: {best} recorded as best_template_id in {label}'s model card")

    fusion = FusionParams.from_card(tuned.card.get("fusion")) if tuned else None
    for fused_system in ("tuned_fused", "fused_without_model"):
        if fused_system in wanted and fusion is None:
            notes.append(f"{fused_system} skipped: {label or 'no tuned model'} has no fitted fusion in its card "
                         f"(the tune job fits it)")
            wanted = [s for s in wanted if s != fused_system]
    base = load_model(cfg.model.base.name, base_model_dir(cfg.model), cfg) if "base_zero_shot" in wanted else None
    sample = {"llm_sample": llm_users}
    plan = [("base_zero_shot", base, served_scorer(cfg)), ("tuned_verbalizer", tuned_model, "verbalizer"),
            ("tuned_likelihood", tuned_model, "likelihood")]
    # What scoring would serve each scorer: a pinned template, else the tuned model's best one in the
    # scorer's form, else the library default in that form (so a scorer never reads the other's prompts).
    library = load_template_library(cfg.instructions.templates_path)
    # Fused scores start from the tuned model's likelihood scores, so fusion needs that system's run.
    needs = {system for system, _, _ in plan if system in wanted or (system == "tuned_likelihood" and "tuned_fused" in wanted)}
    with_prompts = needs | ({"tuned_likelihood"} if "fused_without_model" in wanted else set())  # its similarity column
    templates = {scorer: library.serving_template(scorer, cfg.instructions.inference_template, best)
                 for system, _, scorer in plan if system in with_prompts}
    # The prompts carry the embedding similarity exactly when the card's fusion weighs it, as serving's do,
    # and keep the shortlist of the pool that serving keeps.
    embedding = (catalogue_embedding(items, cfg) if fusion is not None and fusion.embedding_weight
                 and with_prompts else None)
    shortlist = Shortlist(cfg.retrieval.n_candidates, fusion)
    for protocol, es in sets.items():
        sub = es.subset(llm_users)
        # A user whose target retrieval missed scores zero on every metric whatever the order, so the
        # model only runs where its ranking can matter (~13% of Games users in the retrieval protocol).
        scorable = sub.subset(sub.user_ids[sub.target_index >= 0]) if protocol == "retrieval" else sub
        if len(scorable) < len(sub):
            notes.append(f"{protocol}: LLM systems scored the {len(scorable)} of {len(sub)} sampled users whose "
                         f"target is among the candidates; the others are misses for every system")
        prompts: dict[str, pd.DataFrame] = {}
        for template in sorted(set(templates.values())) if len(scorable) else []:
            with _timed(timings, f"{protocol} prompts {template}"):
                prompts[template] = build_eval_prompts(spark, history, items, intents, scorable, tokenizer_dir, cfg, template,
                                                       embedding=embedding, shortlist=shortlist)
        # Likewise among those, only users whose target is in the shortlist their prompt keeps.
        shown = scorable.subset(_target_in_prompts(scorable, next(iter(prompts.values())))) if prompts else scorable
        if len(shown) < len(scorable) and needs:  # fused_without_model alone makes no model pass
            notes.append(f"{protocol}: the model scored the {len(shown)} of them whose target is in the shortlist")
        for system, loaded, scorer in plan:
            if system in needs:
                with _timed(timings, f"{protocol} {system}"):
                    own = prompts.get(templates[scorer])
                    own = None if own is None else own[own["user_id"].isin(shown.user_ids)]
                    part = llm_scores(shown, own, loaded, scorer, cfg) if own is not None and len(own) else None
                    scores = _scores_for(sub, shown, part)
                    matrices[protocol, system] = (sub, scores)
                    if system in wanted:
                        rows += rows_on(sub, scores, system, sample)
        if "tuned_fused" in wanted:
            # Exactly the card's weights, the features the prompts stage gives serving (model/fusion.py).
            fused = fused_matrix(sub, matrices[protocol, "tuned_likelihood"][1], test.histories, fusion,
                                 prompts.get(templates["likelihood"]))
            matrices[protocol, "tuned_fused"] = (sub, fused)
            rows += rows_on(sub, fused, "tuned_fused", sample)
        if "fused_without_model" in wanted:
            no_model = _scores_for(sub, scorable, None)
            content = fused_matrix(sub, no_model, test.histories, replace(fusion, model_weight=0.0),
                                   prompts.get(templates["likelihood"]))
            matrices[protocol, "fused_without_model"] = (sub, content)
            rows += rows_on(sub, content, "fused_without_model", sample)
    notes.append("prompts by scorer: " + ", ".join(f"{scorer} {t}" for scorer, t in sorted(templates.items())))
    return best, label, rows


def _target_in_prompts(es: EvalSet, prompts: pd.DataFrame) -> np.ndarray:
    """The users of ``es`` whose target is among their prompts row's candidates."""
    kept = dict(zip(prompts["user_id"], prompts["candidate_item_ids"]))
    return np.array([u for u, target in zip(es.user_ids, es.targets) if target in set(kept.get(u, ()))], dtype=object)


def _scores_for(full: EvalSet, part: EvalSet, part_scores: np.ndarray | None) -> np.ndarray:
    """``part``'s scores placed in ``full``'s [n, c] matrix; users outside ``part`` stay unscored (-inf)."""
    scores = full.align(pd.DataFrame({"user_id": [], "item_id": [], "score": []}))
    if part_scores is not None:
        scores[full.has_users(part.user_ids)] = part_scores
    return scores


def _template_feedback(spark, cfg, interactions, items, intents, inter_pd, catalogue, tuned_model, tokenizer_dir):
    """Each template of the served scorer's form on a seeded sample of validation users (sampled
    protocol; the test item is neither a candidate nor in the history). Returns (best template id, rows)."""
    from ..instructions import load_template_library
    from ..retrieval import leave_one_out
    from .llm import build_eval_prompts, llm_scores, served_scorer

    e = cfg.evaluation
    validation = leave_one_out_split(inter_pd, "validation")
    users = sample_users(validation.user_ids, e.template_users, e.seed + 1)
    validation = validation.subset(users)
    val_set = sampled_set(validation, catalogue, e.n_negatives, e.seed, stage="validation")
    val_history, val_targets = leave_one_out(interactions, 2)
    check_split_agrees(validation, val_targets.toPandas().query("user_id in @users"))
    scorer = served_scorer(cfg)
    rows, by_template, skipped = [], {}, []
    library = load_template_library(cfg.instructions.templates_path)
    for template in library.for_form(SCORER_FORMS[scorer]):
        prompts = build_eval_prompts(spark, val_history, items, intents, val_set, tokenizer_dir, cfg, template.id)
        # The builder drops what a user lacks (no reviews: P2 -> P1, no intents: -> I0). A template no
        # user actually got is the same prompts as its fallback, which is evaluated in its own turn:
        # skip it rather than spend the model's time twice and credit a template that never rendered.
        if not (prompts["template_id"] == template.id).any():
            skipped.append(template.id)
            continue
        scores = llm_scores(val_set, prompts, tuned_model, scorer, cfg)
        got = metric_rows(val_set, scores, f"{scorer}[{template.id}]", "validation")
        for r in got:
            r["protocol"] = "template_feedback"
        by_template[template.id] = next(r["value"] for r in got if r["metric"] == e.template_metric)
        rows += got
    if not by_template:
        raise InstructRecError(f"no {SCORER_FORMS[scorer]} template rendered for any validation user")
    if skipped:
        log.info("template feedback: %d templates never rendered on these users (fell back): %s", len(skipped), skipped)
    return pick_template(by_template), rows, skipped
