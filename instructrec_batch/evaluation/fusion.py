"""Fitting score fusion on validation users, and the paired statistics that judge it.

The tune job fits in two steps:

1. ``fusion_validation_set``, while Spark is up: the retrieval stage's pool (``retrieval.pool_depth``)
   for a seeded sample of validation users, built from their history before the validation item; each
   candidate's title and embedding similarity; the content weights (popularity, title and embedding
   similarity, next to the rank) on every sampled user, with no model pass: the features are cheap, and
   a weight fitted on thousands of users whose item was retrieved is steadier than one fitted on the
   few hundred a model pass can afford on a CPU. Those weights pick each user's shortlist
   (``model/fusion.Shortlist``), and the served prompts are built for a seeded subset of the users
   whose item made it;
2. ``fit_fusion_for_model`` after training: the model weight, the content weights held, on the subset
   the tuned model scored (a candidate outside the shortlist is never served: it ranks last).

Test users are never seen: their item is the last one, outside every validation history. Why grids
and not a learned ranker: on 390 validation users whose item was retrieved, a listwise linear model
over the same features (and over the retrieval score and source as well) did no better in 2-fold
cross-validation (NDCG@10 0.436-0.439 against 0.448 for this grid); a few weights fit in seconds,
cannot overfit badly, and read plainly in the model card; on the merged candidates a LightGBM
lambdarank ranker did worse than the merged order itself (README, "Two-stage ranking").
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..config import Config
from ..metrics import per_user_ndcg, target_ranks
from ..model.fusion import FusionParams, Shortlist, fuse
from .baselines import popularity_counts, popularity_scores, retrieval_order_scores
from .protocols import EvalSet, leave_one_out_split, retrieval_set, sample_users

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ..retrieval.content import EmbeddingSimilarity, TitleSimilarity

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


def similarity_matrix(eval_set: EvalSet, prompts: pd.DataFrame | None,
                      column: str = "candidate_title_similarity") -> np.ndarray:
    """Each candidate's title (or embedding) similarity as the prompts stage wrote it (``column``, the
    one serving fuses); 0 for users without a prompts row (the retrieval protocol builds prompts only for
    users whose item was retrieved: the others score 0 whatever the order), for padding and for a
    column the prompts stage left empty."""
    if prompts is not None and column in prompts:
        prompts = prompts[prompts[column].notna()]  # null: not computed for that row
    if prompts is None or not len(prompts) or column not in prompts:
        return np.zeros(eval_set.candidates.shape)
    long = prompts[["user_id", "candidate_item_ids", column]].explode(["candidate_item_ids", column])
    long = long.rename(columns={"candidate_item_ids": "item_id", column: "score"})
    aligned = eval_set.align(long.astype({"score": np.float64}))
    return np.where(np.isfinite(aligned), aligned, 0.0)


def history_similarity_matrix(eval_set: EvalSet, histories: dict[str, list[str]], titles: dict[str, str | None],
                              similarity: TitleSimilarity | EmbeddingSimilarity) -> np.ndarray:
    """Each candidate's title (or embedding) similarity computed here from the users' histories, as the prompts stage
    computes it (``TitleSimilarity.scores`` over the same titles, an untitled item read as its id, as
    ``instructions/preference.titled`` does): the fit needs it for thousands of users who get no prompt.
    0 for padding."""
    def title(item_id):
        return titles.get(item_id) or item_id

    out = np.zeros(eval_set.candidates.shape)
    for row, user in enumerate(eval_set.user_ids):
        real = [c for c in eval_set.candidates[row] if c is not None]
        if real:
            out[row, : len(real)] = similarity.scores([title(i) for i in histories.get(user, [])],
                                                      [title(c) for c in real])
    return out


def outside_shortlist(eval_set: EvalSet, prompts: pd.DataFrame | None) -> np.ndarray:
    """[n, c] bool: the real candidates of users with a prompts row that the row left out (the prompts
    stage keeps a shortlist of the pool, ``model/fusion.Shortlist``); False for users without a row."""
    if prompts is None or not len(prompts):
        return np.zeros(eval_set.candidates.shape, dtype=bool)
    long = prompts[["user_id", "candidate_item_ids"]].explode("candidate_item_ids")
    long = long.rename(columns={"candidate_item_ids": "item_id"}).assign(score=1.0)
    return np.isneginf(eval_set.align(long)) & eval_set.has_users(prompts["user_id"])[:, None]


def served_ranks(eval_set: EvalSet, prompts: pd.DataFrame | None) -> np.ndarray:
    """``rank_matrix`` with an infinite rank where the shortlist left a candidate out: ``fuse`` then
    gives it -inf whatever the weights (-log inf), so it ranks last, as it is never served."""
    return np.where(outside_shortlist(eval_set, prompts), np.inf, rank_matrix(eval_set))


def fused_matrix(eval_set: EvalSet, model_scores: np.ndarray, histories: list[list[str]],
                 params: FusionParams, prompts: pd.DataFrame | None = None) -> np.ndarray:
    """The served fusion over an eval set; ``prompts``: the rows the model scored, whose title
    similarities fusion reads and whose candidates are the shortlist served (None: no similarity term)."""
    fused = fuse(model_scores, served_ranks(eval_set, prompts), popularity_matrix(eval_set, histories), params,
                 similarity_matrix(eval_set, prompts), similarity_matrix(eval_set, prompts, "candidate_embedding_similarity"))
    fused[np.equal(eval_set.candidates, None)] = np.nan  # padding stays padding
    return fused


# ── the grid ─────────────────────────────────────────────────────────────────────────────────
def fit_fusion(model_scores: np.ndarray, ranks: np.ndarray, popularity: np.ndarray, target_index: np.ndarray,
               model_weights, popularity_weights, popularity_tolerance: float = 0.0,
               similarity: np.ndarray | None = None, similarity_weights=(0.0,), embedding: np.ndarray | None = None,
               embedding_weights=(0.0,)) -> tuple[FusionParams, pd.DataFrame]:
    """The (model, popularity, title and embedding similarity) weights, next to a rank weight of 1, with the best mean
    NDCG@10; ties go to the first in grid order (smaller weights), so refits agree. A model weight of 0
    means the model adds nothing the retriever, popularity and titles do not: the grid is free to say so.

    ``popularity_tolerance``: the smallest popularity weight whose best point is within this much NDCG@10
    of the best wins. A popularity weight above zero makes every purchase of an item a change in the
    input of each user who has it among the candidates, and those users are scored again the next night
    (README, "Incremental scoring"); a gain smaller than the fit can resolve is not worth that.
    Returns the params and every grid point's score."""
    if similarity is None:
        similarity_weights = (0.0,)
    if embedding is None:
        embedding_weights = (0.0,)
    rows = []
    for w_model, w_pop, w_sim, w_emb in itertools.product(model_weights, popularity_weights, similarity_weights,
                                                          embedding_weights):
        params = FusionParams(rank_weight=1.0, popularity_weight=float(w_pop), model_weight=float(w_model),
                              similarity_weight=float(w_sim), embedding_weight=float(w_emb))
        value = per_user_ndcg(fuse(model_scores, ranks, popularity, params, similarity, embedding), target_index).mean()
        rows.append({"model_weight": float(w_model), "popularity_weight": float(w_pop),
                     "similarity_weight": float(w_sim), "embedding_weight": float(w_emb), "ndcg": float(value)})
    grid = pd.DataFrame(rows)
    close = grid[grid["ndcg"] >= grid["ndcg"].max() - popularity_tolerance]
    lightest = grid[grid["popularity_weight"] == close["popularity_weight"].min()]
    best = lightest.iloc[int(np.argmax(lightest["ndcg"].to_numpy()))]
    return FusionParams(rank_weight=1.0, popularity_weight=float(best.popularity_weight),
                        model_weight=float(best.model_weight), similarity_weight=float(best.similarity_weight),
                        embedding_weight=float(best.embedding_weight)), grid


@dataclass
class FusionValidation:
    """What fitting needs, built while Spark is up: the retrieval-protocol set of the validation users,
    their histories (for popularity), each candidate's title and embedding similarity, and the served prompts of the
    seeded subset of users whose item was retrieved that the model scores."""

    eval_set: EvalSet
    scorable: EvalSet  # the users whose item is in the pool (the others score 0 whatever the weights)
    model_scored: EvalSet  # a seeded subset of the users whose item is in their content shortlist
    histories: list[list[str]]
    similarity: np.ndarray  # [users, candidates] aligned with eval_set
    embedding: np.ndarray | None  # likewise; None when no embedding weight is fitted (tune.fusion_embedding_weights)
    prompts: pd.DataFrame  # the model_scored users' prompts, candidates shortlisted by ``content``
    scorer: str
    content: FusionParams  # step 1's weights (model weight 0), or the fallback's when too few users
    fitted: bool  # enough users whose item is in the pool to fit (tune.fusion_min_users)
    # The candidates the weights are fitted on: retrieval.method and the sequential retriever's version.
    retrieval: dict = field(default_factory=dict)


def fusion_validation_set(spark: "SparkSession", interactions: "DataFrame", items: "DataFrame",
                          intents: "DataFrame | None", tokenizer_dir: str, cfg: Config) -> FusionValidation | None:
    from ..instructions import load_template_library
    from ..model.embeddings import embedding_similarity
    from ..retrieval import build_candidates, leave_one_out, retriever_for
    from ..retrieval.content import TitleSimilarity
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
    pool = cfg.retrieval.pool_depth
    cands = build_candidates(history, served, cfg.retrieval, retriever, n=pool).toPandas()
    eval_set = retrieval_set(validation, cands, pool, stage="validation")
    scorable = eval_set.subset(eval_set.user_ids[eval_set.target_index >= 0])
    titles = dict(items.select("item_id", "title").toPandas().itertuples(index=False))
    # Fitted on the same catalogue titles as the prompts stage fits it on (instructions/prompts.build_prompts).
    title_similarity = TitleSimilarity.fit(titles.values(), cfg.instructions.title_similarity_recent)
    user_histories = dict(zip(validation.user_ids, validation.histories))
    similarity = history_similarity_matrix(eval_set, user_histories, titles, title_similarity)
    embedding, embedder = None, None
    fitted = len(scorable) >= t.fusion_min_users
    # A small lake serves the fallback weights: no embedding pass for a fit it discards.
    if any(t.fusion_embedding_weights) and fitted:
        embedder = embedding_similarity(titles.values(), cfg)
        embedding = history_similarity_matrix(eval_set, user_histories, titles, embedder)
    content = (content_weights(eval_set, all_histories, similarity, embedding, cfg) if fitted
               else replace(fallback_weights(cfg), model_weight=0.0))
    # The model can change the order only of users whose item is in the shortlist it reranks.
    shortlisted = eval_set.subset(eval_set.user_ids[in_shortlist(eval_set, all_histories, similarity, embedding,
                                                                 content, cfg.retrieval.n_candidates)])
    model_scored = shortlisted.subset(sample_users(shortlisted.user_ids, t.fusion_model_users, t.seed + 3))
    scorer = served_scorer(cfg)
    template = load_template_library(cfg.instructions.templates_path).serving_template(
        scorer, cfg.instructions.inference_template, None
    )
    # A small lake may have no validation user whose item was retrieved: nothing to score then.
    prompts = (build_eval_prompts(spark, history, items, intents, model_scored, tokenizer_dir, cfg, template,
                                  embedding=embedder if content.embedding_weight else None,
                                  shortlist=Shortlist(cfg.retrieval.n_candidates, content))
               if len(model_scored) else pd.DataFrame())
    log.info("fusion validation: %d users, the item in the %d-deep pool for %d (%.1f%%) and in the content "
             "shortlist of %d for %d, %d of them scored by the model", len(eval_set), pool, len(scorable),
             100.0 * len(scorable) / max(1, len(eval_set)), cfg.retrieval.n_candidates, len(shortlisted),
             len(model_scored))
    retrieval = {"method": cfg.retrieval.method, "pool_depth": pool,
                 "retriever": None if retriever is None else f"{retriever.name}/{retriever.version}"}
    return FusionValidation(eval_set, scorable, model_scored, all_histories, similarity, embedding, prompts, scorer,
                            content, fitted, retrieval)


def unscored(eval_set: EvalSet) -> np.ndarray:
    """Model scores of a fusion without the model: -inf for every real candidate (``fuse`` drops the
    term at weight 0), NaN for padding."""
    return np.where(np.equal(eval_set.candidates, None), np.nan, -np.inf)


def content_weights(eval_set: EvalSet, histories: list[list[str]], similarity: np.ndarray,
                    embedding: np.ndarray | None, cfg: Config) -> FusionParams:
    """Step 1: the popularity, title and embedding weights (model weight 0) with the best NDCG@10 over the pool."""
    t = cfg.tune
    no_model = unscored(eval_set)
    content, _ = fit_fusion(no_model, rank_matrix(eval_set), popularity_matrix(eval_set, histories),
                            eval_set.target_index, (0.0,), t.fusion_popularity_weights, t.fusion_popularity_tolerance,
                            similarity, t.fusion_similarity_weights, embedding, t.fusion_embedding_weights)
    return content


def fallback_weights(cfg: Config) -> FusionParams:
    t = cfg.tune
    return FusionParams(rank_weight=1.0, model_weight=t.fusion_fallback_model_weight,
                        popularity_weight=t.fusion_fallback_popularity_weight,
                        similarity_weight=t.fusion_fallback_similarity_weight,
                        embedding_weight=t.fusion_fallback_embedding_weight)


def in_shortlist(eval_set: EvalSet, histories: list[list[str]], similarity: np.ndarray, embedding: np.ndarray | None,
                 params: FusionParams, keep: int) -> np.ndarray:
    """[n] bool: whose item the content part of ``params`` ranks in the top ``keep`` of the pool (what
    ``Shortlist`` keeps, ties aside)."""
    no_model = unscored(eval_set)
    content = fuse(no_model, rank_matrix(eval_set), popularity_matrix(eval_set, histories),
                   replace(params, model_weight=0.0), similarity, embedding)
    rank = target_ranks(np.nan_to_num(content, nan=-np.inf), eval_set.target_index)
    return (rank >= 1) & (rank <= keep)


def validation_model_scores(data: FusionValidation, prompts: pd.DataFrame, score) -> np.ndarray:
    """[users, candidates] model scores over the whole validation set: ``score(prompts)`` for the users
    the model scores (their prompts, in ``data.model_scored`` order), -inf for the others, NaN for padding."""
    es, scored = data.eval_set, data.model_scored
    model = np.full(es.candidates.shape, -np.inf)
    if len(scored):
        model[es.has_users(scored.user_ids)] = score(prompts)
    model[np.equal(es.candidates, None)] = np.nan
    return model


def fit_fusion_for_model(model_dir: str, data: FusionValidation, cfg: Config) -> tuple[FusionParams, dict]:
    """Score the model's subset with the published model and fit its weight, step 1's content weights
    held (module docstring); returns the params and the card's ``fusion_fit`` record: NDCG@10 and paired
    95% CIs of each step on the users it was fitted on."""
    from .llm import llm_scores, load_model

    started, t = time.time(), cfg.tune
    es, scored, content = data.eval_set, data.model_scored, data.content
    ranks, popularity, similarity = rank_matrix(es), popularity_matrix(es, data.histories), data.similarity
    embedding = data.embedding  # None: not fitted; fit_fusion and fuse then leave the term out
    no_model = unscored(es)
    loaded = load_model("fusion fit", model_dir, cfg)
    model = validation_model_scores(data, data.prompts, lambda prompts: llm_scores(scored, prompts, loaded, data.scorer, cfg))
    rows = es.has_users(scored.user_ids)
    embedding_rows = None if embedding is None else embedding[rows]
    # The model reranks the shortlist alone: what the prompts left out ranks last, as serving never shows it.
    on_scored = (model[rows], served_ranks(es, data.prompts)[rows], popularity[rows])
    params = content  # no user to weigh the model on (a small lake): content alone
    if rows.any():
        params, _ = fit_fusion(*on_scored, es.target_index[rows], t.fusion_model_weights, (content.popularity_weight,),
                               0.0, similarity[rows], (content.similarity_weight,), embedding_rows,
                               (content.embedding_weight,))
    fitted = data.fitted
    if not fitted:
        log.warning("only %d validation users have their item among the candidates (tune.fusion_min_users=%d): "
                    "too few to fit fusion weights; serving tune.fusion_fallback_* instead", len(data.scorable),
                    t.fusion_min_users)
        params = fallback_weights(cfg)

    def ndcg(matrix, users=slice(None)):
        return per_user_ndcg(matrix, es.target_index[users])

    retrieval = ndcg(retrieval_order_scores(es))
    content_ndcg = ndcg(fuse(no_model, ranks, popularity, content, similarity, embedding))
    fused = ndcg(fuse(*on_scored, params, similarity[rows], embedding_rows), rows)
    # On the users the weights were picked on, so optimistic; still, a CI that straddles zero here says
    # the step adds nothing measurable over the order it reranks (README, "Two-stage ranking").
    record = {
        "fitted": fitted,
        "users": int(len(es)),
        "users_with_item_retrieved": int(len(data.scorable)),
        "users_scored_by_model": int(len(scored)),
        "content": {  # every sampled user, no model pass
            "ndcg@10_retrieval_order": float(retrieval.mean()),
            "ndcg@10_fused": float(content_ndcg.mean()),
            "fused_minus_retrieval_order_ci95": list(paired_bootstrap_ci(content_ndcg, retrieval)[1:]),
        },
        "model": {  # the users the model scored
            "ndcg@10_retrieval_order": float(retrieval[rows].mean()),
            "ndcg@10_content": float(content_ndcg[rows].mean()),
            "ndcg@10_model_only": float(ndcg(model[rows], rows).mean()),
            "ndcg@10_fused": float(fused.mean()),
            "fused_minus_retrieval_order_ci95": list(paired_bootstrap_ci(fused, retrieval[rows])[1:]),
            "fused_minus_content_ci95": list(paired_bootstrap_ci(fused, content_ndcg[rows])[1:]),
        },
        "scorer": data.scorer,
        "retrieval": data.retrieval,
        "seconds": round(time.time() - started, 1),
    }
    log.info("fusion: %s; %s", params, record)
    return params, record
