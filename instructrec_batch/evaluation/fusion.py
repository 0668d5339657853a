"""Fitting score fusion on validation users, and the paired statistics that judge it.

The tune job calls ``fusion_validation_set`` while Spark is up (the retrieval stage's top-N for a seeded
sample of validation users, built from their history before the validation item, and the served
prompts of the users whose item was retrieved), then ``fit_fusion_for_model`` after training: the tuned
model scores those prompts and a grid over the two fusion weights (``model/fusion.py``) picks the pair
with the best mean NDCG@10. Test users are never seen: their item is the last one, outside every
validation history. Why a grid and not a learned ranker: on 390 validation users whose item was
retrieved, a listwise linear model over the same features (and over the retrieval score and source as
well) did no better in 2-fold cross-validation (NDCG@10 0.436-0.439 against 0.448 for this grid); two
weights fit in a second, cannot overfit a few hundred users badly, and read plainly in the model card;
on the merged candidates a LightGBM lambdarank ranker did worse than the merged order itself (README,
"Two-stage ranking").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..config import Config
from ..metrics import per_user_ndcg
from ..model.fusion import FusionParams, fuse
from .baselines import popularity_counts, popularity_scores, retrieval_order_scores
from .protocols import EvalSet, leave_one_out_split, retrieval_set, sample_users

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


# ── paired confidence intervals ──────────────────────────────────────────────────────────────
def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, n_resamples: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """(mean of a - b, lower, upper): a percentile bootstrap over users of the paired difference.
    (Numpy rather than scipy.stats.bootstrap: a 40 MB dependency for these few lines.)"""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_resamples, diff.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(diff.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


# ── features of an eval set, aligned with its candidate matrix ─────────────────────────────
def rank_matrix(eval_set: EvalSet) -> np.ndarray:
    """Retrieval rank per candidate: the set's ``ranks`` (the column + 1 in the retrieval protocol, the
    retrieval stage's order of sampled candidates from ``protocols.rank_by_retrieval``), else NaN (not
    ranked by the retriever)."""
    if eval_set.ranks is None:
        return np.full(eval_set.candidates.shape, np.nan)
    return eval_set.ranks.astype(np.float64)


def popularity_matrix(eval_set: EvalSet, histories: list[list[str]]) -> np.ndarray:
    """The share of users whose history holds each candidate (what the prompts stage computes over the
    lake's interactions for serving)."""
    counts = popularity_counts(histories)
    return np.nan_to_num(popularity_scores(eval_set, counts) / max(1, len(histories)), nan=0.0)


def similarity_matrix(eval_set: EvalSet, prompts: pd.DataFrame | None) -> np.ndarray:
    """Each candidate's title similarity as the prompts stage wrote it (``candidate_title_similarity``,
    the column serving fuses); 0 for users without a prompts row (the retrieval protocol builds prompts
    only for users whose item was retrieved: the others score 0 whatever the order) and for padding."""
    column = "candidate_title_similarity"
    if prompts is None or not len(prompts) or column not in prompts:
        return np.zeros(eval_set.candidates.shape)
    long = prompts[["user_id", "candidate_item_ids", column]].explode(["candidate_item_ids", column])
    long = long.rename(columns={"candidate_item_ids": "item_id", column: "score"})
    aligned = eval_set.align(long.astype({"score": np.float64}))
    return np.where(np.isfinite(aligned), aligned, 0.0)


def fused_matrix(eval_set: EvalSet, model_scores: np.ndarray, histories: list[list[str]],
                 params: FusionParams, prompts: pd.DataFrame | None = None) -> np.ndarray:
    """The served fusion over an eval set; ``prompts``: the rows the model scored, whose title
    similarities fusion reads (None: no similarity term)."""
    fused = fuse(model_scores, rank_matrix(eval_set), popularity_matrix(eval_set, histories), params,
                 similarity_matrix(eval_set, prompts))
    fused[np.equal(eval_set.candidates, None)] = np.nan  # padding stays padding
    return fused


# ── the grid ─────────────────────────────────────────────────────────────────────────────────
def fit_fusion(model_scores: np.ndarray, ranks: np.ndarray, popularity: np.ndarray, target_index: np.ndarray,
               model_weights, popularity_weights, popularity_tolerance: float = 0.0,
               similarity: np.ndarray | None = None, similarity_weights=(0.0,)) -> tuple[FusionParams, pd.DataFrame]:
    """The (model, popularity, title similarity) weights, next to a rank weight of 1, with the best mean
    NDCG@10; ties go to the first in grid order (smaller weights), so refits agree. A model weight of 0
    means the model adds nothing the retriever, popularity and titles do not: the grid is free to say so.

    ``popularity_tolerance``: the smallest popularity weight whose best point is within this much NDCG@10
    of the best wins. A popularity weight above zero makes every purchase of an item a change in the
    input of each user who has it among the candidates, and those users are scored again the next night
    (README, "Incremental scoring"); a gain smaller than the fit can resolve is not worth that.
    Returns the params and every grid point's score."""
    if similarity is None:
        similarity_weights = (0.0,)
    rows = []
    for w_model in model_weights:
        for w_pop in popularity_weights:
            for w_sim in similarity_weights:
                params = FusionParams(rank_weight=1.0, popularity_weight=float(w_pop), model_weight=float(w_model),
                                      similarity_weight=float(w_sim))
                value = per_user_ndcg(fuse(model_scores, ranks, popularity, params, similarity), target_index).mean()
                rows.append({"model_weight": float(w_model), "popularity_weight": float(w_pop),
                             "similarity_weight": float(w_sim), "ndcg": float(value)})
    grid = pd.DataFrame(rows)
    close = grid[grid["ndcg"] >= grid["ndcg"].max() - popularity_tolerance]
    lightest = grid[grid["popularity_weight"] == close["popularity_weight"].min()]
    best = lightest.iloc[int(np.argmax(lightest["ndcg"].to_numpy()))]
    return FusionParams(rank_weight=1.0, popularity_weight=float(best.popularity_weight),
                        model_weight=float(best.model_weight), similarity_weight=float(best.similarity_weight)), grid


@dataclass
class FusionValidation:
    """What fitting needs, built while Spark is up: the retrieval-protocol set of the validation users,
    their histories (for popularity), and the served prompts of the users whose item was retrieved."""

    eval_set: EvalSet
    scorable: EvalSet
    histories: list[list[str]]
    prompts: pd.DataFrame
    scorer: str
    # The candidates the weights are fitted on: retrieval.method and the sequential retriever's version.
    retrieval: dict = field(default_factory=dict)


def fusion_validation_set(spark: "SparkSession", interactions: "DataFrame", items: "DataFrame",
                          intents: "DataFrame | None", tokenizer_dir: str, cfg: Config) -> FusionValidation | None:
    from ..instructions import load_template_library
    from ..retrieval import build_candidates, leave_one_out, retriever_for
    from .llm import build_eval_prompts, served_scorer

    t = cfg.tune
    if not t.fusion_users:
        return None
    inter_pd = interactions.select("user_id", "item_id", "position").toPandas()
    validation = leave_one_out_split(inter_pd, "validation")
    all_histories = validation.histories
    users = sample_users(validation.user_ids, t.fusion_users, t.seed + 2)
    validation = validation.subset(users)
    history, _ = leave_one_out(interactions, 2)
    served = spark.createDataFrame(pd.DataFrame({"user_id": users.astype(str)}))
    retriever = retriever_for(cfg.retrieval, cfg.model.registry_dir, min_holdout=2)  # never saw a validation item
    cands = build_candidates(history, served, cfg.retrieval, retriever).toPandas()
    eval_set = retrieval_set(validation, cands, cfg.retrieval.n_candidates, stage="validation")
    scorable = eval_set.subset(eval_set.user_ids[eval_set.target_index >= 0])
    scorer = served_scorer(cfg)
    template = load_template_library(cfg.instructions.templates_path).serving_template(
        scorer, cfg.instructions.inference_template, None
    )
    # A small lake may have no validation user whose item was retrieved: nothing to score then.
    prompts = (build_eval_prompts(spark, history, items, intents, scorable, tokenizer_dir, cfg, template)
               if len(scorable) else pd.DataFrame())
    log.info("fusion validation: %d users, the item retrieved for %d (%.1f%%)", len(eval_set), len(scorable),
             100.0 * len(scorable) / max(1, len(eval_set)))
    retrieval = {"method": cfg.retrieval.method,
                 "retriever": None if retriever is None else f"{retriever.name}/{retriever.version}"}
    return FusionValidation(eval_set, scorable, all_histories, prompts, scorer, retrieval)


def validation_model_scores(data: FusionValidation, prompts: pd.DataFrame, score) -> np.ndarray:
    """[users, candidates] model scores over the whole validation set: ``score(prompts)`` for the users
    whose item was retrieved (their prompts, in ``data.scorable`` order), -inf for the others (the
    grid's NDCG is 0 for them whatever it picks, so they need no model pass), NaN for padding."""
    es, scorable = data.eval_set, data.scorable
    model = np.full(es.candidates.shape, -np.inf)
    if len(scorable):
        model[es.has_users(scorable.user_ids)] = score(prompts)
    model[np.equal(es.candidates, None)] = np.nan
    return model


def fit_fusion_for_model(model_dir: str, data: FusionValidation, cfg: Config) -> tuple[FusionParams, dict]:
    """Score the validation prompts with the published model and fit the weights; returns the params
    and the card's ``fusion_fit`` record (users, NDCG@10 of retrieval order, model-only and fused, and
    the paired 95% CI of fused - retrieval order over these users)."""
    from .llm import llm_scores, load_model

    started = time.time()
    loaded = load_model("fusion fit", model_dir, cfg)
    es, scorable = data.eval_set, data.scorable
    model = validation_model_scores(data, data.prompts,
                                    lambda prompts: llm_scores(scorable, prompts, loaded, data.scorer, cfg))
    ranks, popularity = rank_matrix(es), popularity_matrix(es, data.histories)
    similarity = similarity_matrix(es, data.prompts)
    params, grid = fit_fusion(model, ranks, popularity, es.target_index, cfg.tune.fusion_model_weights,
                              cfg.tune.fusion_popularity_weights, cfg.tune.fusion_popularity_tolerance,
                              similarity, cfg.tune.fusion_similarity_weights)
    retrieval = retrieval_order_scores(es)
    fitted = len(scorable) >= cfg.tune.fusion_min_users
    if not fitted:
        log.warning("only %d validation users have their item among the candidates (tune.fusion_min_users=%d): "
                    "too few to fit fusion weights; serving tune.fusion_fallback_* instead", len(scorable),
                    cfg.tune.fusion_min_users)
        params = FusionParams(rank_weight=1.0, model_weight=cfg.tune.fusion_fallback_model_weight,
                              popularity_weight=cfg.tune.fusion_fallback_popularity_weight)
    retrieval_ndcg = per_user_ndcg(retrieval, es.target_index)
    fused_ndcg = per_user_ndcg(fuse(model, ranks, popularity, params, similarity), es.target_index)
    # On the users the weights were picked on, so optimistic; still, a CI that straddles zero here says
    # the model stage adds nothing measurable over the order it reranks (README, "Two-stage ranking").
    _, low, high = paired_bootstrap_ci(fused_ndcg, retrieval_ndcg)
    record = {
        "fitted": fitted,
        "users": int(len(es)),
        "users_with_item_retrieved": int(len(scorable)),
        "ndcg@10_retrieval_order": float(retrieval_ndcg.mean()),
        "ndcg@10_model_only": float(per_user_ndcg(model, es.target_index).mean()),
        "ndcg@10_fused": float(fused_ndcg.mean()),
        "fused_minus_retrieval_order_ci95": [low, high],
        "scorer": data.scorer,
        "retrieval": data.retrieval,
        "seconds": round(time.time() - started, 1),
    }
    log.info("fusion: %s; %s", params, record)
    return params, record
