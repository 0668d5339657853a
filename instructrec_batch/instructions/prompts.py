"""Inference prompts for the nightly job: one prompt per user (reranking or matching form, whichever the
served scorer reads), rendered inside Spark, with each candidate's retrieval rank, popularity, title
similarity and embedding similarity for score fusion."""

from __future__ import annotations

import random
from collections.abc import Callable

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..config import InstructionsConfig
from ..lake.schemas import PROMPTS, spark_schema
from ..retrieval.content import EmbeddingSimilarity, TitleSimilarity
from ..retrieval.popularity import item_popularity
from . import fields
from .preference import titled, with_user_features
from .render import LETTERS, ModelInput, fit_history, render_rows
from .templates import Template, TemplateError, TemplateLibrary, load_template_library

# Which of a user's pool (retrieval ranks, popularity, title and embedding similarity, one entry per
# candidate in retrieval order) the prompt keeps: their positions, ascending (model/fusion.Shortlist).
Shortlister = Callable[[list, list, list, "list | None"], "list[int]"]
# What rendering writes; the fingerprint is hashed afterwards, in Spark, over the rendered columns.
OUTPUT_COLUMNS = [f.name for f in PROMPTS.schema if f.name not in ("run_date", "fingerprint")]
# One row per user scores all candidates at once: reranking (verbalizer) or matching (likelihood).
INFERENCE_FORMS = ("reranking", "matching")


def typed_frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows as a pandas frame whose nullable ints survive Arrow (None would make them floats)."""
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("n_prompt_tokens", "n_history_items"):
        if col in frame:
            frame[col] = frame[col].astype("Int32")
    return frame


def shuffled_order(n: int, seed: int, user_id: str) -> list[int]:
    """A per-user permutation of 0..n-1: seeded by (seed, user) with a string seed, which Python
    hashes with SHA-512, so it is identical in every process and run (unlike hash())."""
    order = list(range(n))
    random.Random(f"{seed}:{user_id}").shuffle(order)
    return order


def choose_template(library: TemplateLibrary, chosen: Template, has_preference: bool, has_intent: bool,
                    has_history: bool = True) -> Template:
    """The chosen template, or the same phrasing with the parts this user lacks left out. A user with
    no history (the caller checked they have an intent) gets the stated need alone: P0, a query (I2)
    unless the chosen template asks for a vague need."""
    if not has_history:
        return library.closest(chosen, "P0", "I1" if chosen.intention == "I1" else "I2")
    preference = chosen.preference if (chosen.preference != "P2" or has_preference) else "P1"
    intention = chosen.intention if has_intent else "I0"
    if preference == "P0" and intention == "I0":
        preference = "P1"  # a P0 template needs an intention; without one, use the history
    if (preference, intention) == (chosen.preference, chosen.intention):
        return chosen
    return library.closest(chosen, preference, intention)


def render_user(
    row, library: TemplateLibrary, chosen: Template, tokenizer, cfg: InstructionsConfig, budget: int,
    wrap: ModelInput | None = None, similarity: TitleSimilarity | None = None,
    embedding: EmbeddingSimilarity | None = None, shortlist: Shortlister | None = None,
) -> dict:
    """One prompts row for one user (a pandas row of the assembled per-user frame). ``similarity``:
    the catalogue's fitted title similarity (None: every candidate's is 0); ``embedding``: its
    embedding similarity (None: not computed, the column is null); ``shortlist``: which of the
    retrieved pool to keep (``build_prompts``)."""
    wrap = wrap or ModelInput(tokenizer, library.preamble)
    ids, titles = fields.as_list(row.cand_ids), fields.as_list(row.cand_titles)
    ranks, popularity = fields.as_list(row.cand_ranks), fields.as_list(row.cand_popularity)
    history = fields.as_list(row.history_titles)
    title_similarity = similarity.scores(history, titles) if similarity is not None else [0.0] * len(ids)
    embedding_similarity = embedding.scores(history, titles) if embedding is not None else None

    def aligned(value) -> list:  # a per-candidate list, or Nones where the frame had none
        return fields.as_list(value) or [None] * len(ids)

    reason_ids, reason_titles, sources = aligned(row.cand_reason_ids), aligned(row.cand_reason_titles), aligned(row.cand_sources)
    kept = (shortlist(ranks, popularity, title_similarity, embedding_similarity) if shortlist is not None
            else range(min(len(ids), len(LETTERS))))
    if len(kept) < len(ids):
        ids, titles, ranks, popularity, title_similarity, reason_ids, reason_titles, sources = (
            [seq[i] for i in kept] for seq in (ids, titles, ranks, popularity, title_similarity, reason_ids,
                                               reason_titles, sources))
        if embedding_similarity is not None:
            embedding_similarity = [embedding_similarity[i] for i in kept]
    clean_titles = [fields.clean_value(t, cfg.max_title_chars) or "" for t in titles]
    reasons = [fields.reason_text(src, title, cfg.max_title_chars) for src, title in zip(sources, reason_titles)]
    intents = fields.as_list(row.intents)
    cold_start = not history and bool(intents) and cfg.cold_start_prompts
    if not history and not cold_start:  # nothing to ask the model about: popularity order as is
        return dict(
            user_id=row.user_id, template_id=None, prompt=None, candidate_item_ids=ids,
            candidate_letters=list(LETTERS[: len(ids)]), candidate_titles=clean_titles,
            candidate_retrieval_ranks=ranks, candidate_popularity=popularity,
            candidate_title_similarity=title_similarity, candidate_embedding_similarity=embedding_similarity,
            candidate_reason_item_ids=reason_ids, candidate_reasons=reasons,
            n_prompt_tokens=None, n_history_items=0, is_fallback=True, cold_start=False,
        )
    order = shuffled_order(len(ids), cfg.seed, row.user_id)
    letters = list(LETTERS[: len(ids)])
    prefs = dict(
        liked=fields.as_list(row.liked), disliked=fields.as_list(row.disliked),
        categories=fields.as_list(row.fav_category), brands=fields.as_list(row.fav_brand),
    )
    preference = fields.preference_text(**prefs, max_chars=cfg.max_field_chars, summary=row.teacher_preference) \
        if row.has_reviews else ""
    tpl = choose_template(library, chosen, bool(preference) and cfg.explicit_preference, bool(intents), bool(history))
    values = dict(
        preference=preference,
        intention=fields.intention_text(intents, cfg.max_field_chars),
        candidates=fields.candidate_block(letters, [titles[i] for i in order], cfg.max_title_chars),
    )

    def build(kept: list[str]) -> str:
        return wrap(tpl.render(history="\n".join(kept), **values))

    prompt, n_tokens, n_kept = fit_history(build, fields.history_lines(history, cfg.max_title_chars), tokenizer, budget,
                                           layout=tpl.text)
    return dict(
        user_id=row.user_id, template_id=tpl.id, prompt=prompt,
        candidate_item_ids=[ids[i] for i in order], candidate_letters=letters,
        candidate_titles=[clean_titles[i] for i in order],
        candidate_retrieval_ranks=[ranks[i] for i in order], candidate_popularity=[popularity[i] for i in order],
        candidate_title_similarity=[title_similarity[i] for i in order],
        candidate_embedding_similarity=None if embedding_similarity is None else [embedding_similarity[i] for i in order],
        candidate_reason_item_ids=[reason_ids[i] for i in order], candidate_reasons=[reasons[i] for i in order],
        n_prompt_tokens=n_tokens,
        n_history_items=n_kept if "history" in tpl.placeholders else 0, is_fallback=False, cold_start=cold_start,
    )


def assemble_users(interactions, items, candidates, intents, cfg: InstructionsConfig,
                   popularity: DataFrame | None = None, teacher: DataFrame | None = None) -> DataFrame:
    """One row per candidate user with everything a prompt needs, as arrays (Spark does the joins).
    ``popularity`` (item_id, pop_score) defaults to the share of ``interactions``' users per item;
    ``teacher`` (user_id, teacher_preference): the current LLM-teacher sentences (teacher.py)."""
    popularity = item_popularity(interactions) if popularity is None else popularity
    for c in ("source", "reason_item_id"):  # candidates built outside the retrieval stage (evaluation)
        if c not in candidates.columns:
            candidates = candidates.withColumn(c, F.lit(None).cast("string"))
    reason_titles = items.select(F.col("item_id").alias("reason_item_id"), F.col("title").alias("reason_title"))
    cands = titled(candidates.select("user_id", "item_id", "retrieval_rank", "source", "reason_item_id"), items).join(
        popularity.select("item_id", "pop_score"), "item_id", "left"
    ).fillna(0.0, subset=["pop_score"]).join(reason_titles, "reason_item_id", "left")
    per_user = cands.groupBy("user_id").agg(F.sort_array(F.collect_list(F.struct(
        "retrieval_rank", "item_id", "title", "pop_score", "source", "reason_item_id", "reason_title"))).alias("c")
    ).select(
        "user_id", F.col("c.item_id").alias("cand_ids"), F.col("c.title").alias("cand_titles"),
        F.col("c.retrieval_rank").alias("cand_ranks"), F.col("c.pop_score").alias("cand_popularity"),
        F.col("c.source").alias("cand_sources"), F.col("c.reason_item_id").alias("cand_reason_ids"),
        F.col("c.reason_title").alias("cand_reason_titles"),
    )
    users = with_user_features(per_user, interactions, items, intents, cfg)
    if teacher is None or not cfg.teacher_preferences:
        return users.withColumn("teacher_preference", F.lit(None).cast("string"))
    return users.join(teacher, "user_id", "left")


# The prompts columns that decide a user's model scores, whatever the scoring settings: the text, the
# candidates in their lettered order and the fallback flag (a fallback row's order is its ranking).
MODEL_INPUT_COLUMNS = ("template_id", "prompt", "candidate_item_ids", "candidate_letters", "candidate_titles",
                       "is_fallback")
# Per-candidate features that score fusion may read (scoring/actor.py, fused_scores).
FUSION_FEATURE_COLUMNS = ("candidate_retrieval_ranks", "candidate_popularity", "candidate_title_similarity",
                          "candidate_embedding_similarity")
# Copied into the recommendations rows as they are: a changed reason must not be served from yesterday.
PASSED_THROUGH_COLUMNS = ("candidate_reason_item_ids", "candidate_reasons", "cold_start")


def with_fingerprint(prompts: DataFrame, features: tuple[str, ...] = FUSION_FEATURE_COLUMNS) -> DataFrame:
    """``fingerprint``: a 64-bit hash (xxhash64, hex) of the model inputs and of the fusion ``features``
    the served scores read.

    The features are named by the caller because only it knows the fusion: popularity is the share of
    all users per item and moves a little every night for everyone, so hashing it when its weight is
    zero would make every user look changed. Each column's name is hashed before its value, so a
    fingerprint taken over other features never equals this one. Why xxhash64 and not SHA-256 of the
    row as JSON: serialising every prompt to JSON cost the prompts stage ~13% (README, "Incremental
    scoring"); the hash is only compared with the same user's own earlier one, where 64 bits make a
    false match negligible (2^-64 per user and night)."""
    unknown = set(features) - set(FUSION_FEATURE_COLUMNS)
    if unknown:
        raise ValueError(f"not a fusion feature of the prompts table: {sorted(unknown)}")
    named = [part for c in (*MODEL_INPUT_COLUMNS, *PASSED_THROUGH_COLUMNS, *features) for part in (F.lit(c), F.col(c))]
    return prompts.withColumn("fingerprint", F.format_string("%016x", F.xxhash64(*named)))


def build_prompts(
    interactions: DataFrame,
    items: DataFrame,
    candidates: DataFrame,
    intents: DataFrame | None,
    tokenizer_dir: str,
    cfg: InstructionsConfig,
    template_id: str | None = None,
    popularity: DataFrame | None = None,
    fingerprint_features: tuple[str, ...] = FUSION_FEATURE_COLUMNS,
    teacher: DataFrame | None = None,
    similarity: TitleSimilarity | None = None,
    embedding: EmbeddingSimilarity | None = None,
    shortlist: Shortlister | None = None,
) -> DataFrame:
    """One row per user in `candidates`: the PROMPTS columns except run_date (see module docstring).

    Template: `template_id`, else cfg.inference_template, else the library's default (reranking); per
    user it loses the parts the user lacks (no reviews: P2 -> P1; no intents: -> I0). Candidates are
    lettered A.. in a per-user seeded shuffle; candidate_item_ids[i] is labelled candidate_letters[i].
    ``fingerprint_features``: the fusion features the served scores read (``with_fingerprint``).
    ``teacher``: user_id, teacher_preference (teacher.current_preferences): P2 states those users' taste
    with that sentence instead of review snippets. ``similarity``: the title similarity fitted on the
    catalogue; None fits it on ``items``' titles here (the driver collects one column of the catalogue).
    ``embedding``: the catalogue's embedding similarity (``model/embeddings.py`` computes it: a model
    pass this layer does not make); None leaves ``candidate_embedding_similarity`` null.
    ``shortlist``: which of each user's retrieved pool the prompt keeps (the serving fusion's content
    shortlist, model/fusion.Shortlist); None keeps the first 20 (the letters) in retrieval order.
    """
    library = load_template_library(cfg.templates_path)
    chosen = library.get(template_id or cfg.inference_template or library.default_inference)
    if chosen.task_form not in INFERENCE_FORMS:
        raise TemplateError(
            f"template {chosen.id} is {chosen.task_form}; inference prompts (one row per user) take {INFERENCE_FORMS}"
        )
    frame = assemble_users(interactions, items, candidates, intents, cfg, popularity, teacher)
    if similarity is None:
        similarity = TitleSimilarity.fit((r.title for r in items.select("title").toLocalIterator()),
                                         cfg.title_similarity_recent)
    budget, tokenizer_dir = cfg.max_prompt_tokens, str(tokenizer_dir)

    schema = spark_schema(PROMPTS)
    out_schema = type(schema)([f for f in schema.fields if f.name in OUTPUT_COLUMNS])
    rendered = render_rows(
        frame, tokenizer_dir, library.preamble,
        lambda row, tokenizer, wrap: render_user(row, library, chosen, tokenizer, cfg, budget, wrap, similarity, embedding,
                                                shortlist),
        lambda rows: typed_frame(rows, OUTPUT_COLUMNS), out_schema,
    )
    return with_fingerprint(rendered, fingerprint_features)
