"""Training (and validation) examples for instruction tuning: every task form, answers included.

For each user with a held-out target: a task form drawn from tune.task_mix, a preference/intention
combination the user's data supports, one phrasing, seeded negatives from items the user never
interacted with, and the exact text the model must emit after the prompt.
"""

from __future__ import annotations

import random

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..config import InstructionsConfig, TuneConfig
from . import fields
from .intention import specific_intention, vague_intention
from .preference import titled, with_user_features
from .render import LETTERS, ModelInput, count_tokens, fit_history, render_rows
from .templates import TemplateLibrary, load_template_library

COLUMNS = [
    "user_id", "task_form", "template_id", "prompt", "answer",
    "target_item_id", "candidate_item_ids", "candidate_letters", "candidate_titles",
]
SCHEMA = (
    "user_id string, task_form string, template_id string, prompt string, answer string, "
    "target_item_id string, candidate_item_ids array<string>, candidate_letters array<string>, "
    "candidate_titles array<string>"
)
# Share of examples that state an intention; the nightly prompts mostly have none, so most do not.
INTENTION_SHARE = 0.4
P0_SHARE = 0.2  # with an intention, sometimes leave the user's preference out (paper's P0 forms)
ANSWER_TOKENS = 32  # room kept for the answer when the tune job packs prompt + answer into max_tokens


def sample_negatives(rng: random.Random, catalogue: list[str], exclude: set[str], n: int,
                     cum_weights: list[float] | None = None) -> list[str]:
    """n distinct items outside `exclude`, uniformly or by `cum_weights` (cumulative, aligned with the
    catalogue: popularity-weighted draws). Rejection sampling: histories are tiny next to catalogues."""
    available = len(catalogue) - len(exclude & set(catalogue))
    n = min(n, max(0, available))
    picked: list[str] = []
    chosen = set(exclude)
    while len(picked) < n:
        if cum_weights is None:
            item = catalogue[rng.randrange(len(catalogue))]
        else:
            item = rng.choices(catalogue, cum_weights=cum_weights, k=1)[0]
        if item not in chosen:
            chosen.add(item)
            picked.append(item)
    return picked


def training_negatives(rng: random.Random, n: int, retrieved: list[str], catalogue: list[str], exclude: set[str],
                       share: float, cum_weights: list[float] | None) -> list[str]:
    """What serving makes the model rank: the first round(share * n) items the retrieval stage found for
    the user's history before the target, then random items (popularity-weighted when cum_weights) for
    the rest. `exclude` holds the target and every item of the user's sequence, before and after it."""
    from_retrieval = [x for x in retrieved if x not in exclude][: round(share * n)]
    rest = sample_negatives(rng, catalogue, exclude | set(from_retrieval), n - len(from_retrieval), cum_weights)
    return from_retrieval + rest


def _pick_form(rng: random.Random, mix: dict[str, float]) -> str:
    forms = sorted(mix)
    return rng.choices(forms, weights=[mix[f] for f in forms])[0]


def _pick_combo(rng: random.Random, has_history: bool, has_prefs: bool, vague: str | None) -> tuple[str, str]:
    intention = "I0"
    if rng.random() < INTENTION_SHARE:
        intention = rng.choice(["I1", "I2"] if vague else ["I2"])
    prefs = [p for p, ok in (("P1", has_history), ("P2", has_prefs)) if ok]
    if intention != "I0" and (not prefs or rng.random() < P0_SHARE):
        return "P0", intention
    if not prefs:
        return "P0", "I2"  # no history or reviews: the target's keywords are all there is
    return rng.choice(prefs), intention


def example_for(row, library: TemplateLibrary, tokenizer, wrap: ModelInput, catalogue: list[str],
                titles: dict[str, str], cfg: InstructionsConfig, tune: TuneConfig, seed: int,
                cum_weights: list[float] | None = None) -> dict:
    rng = random.Random(f"{seed}:{row.user_id}")
    target = row.target_item_id
    history = fields.as_list(row.history_titles)
    form = _pick_form(rng, tune.task_mix)
    vague = vague_intention(row.target_category, row.target_brand, cfg.max_field_chars)
    preference = ""
    if row.has_reviews and cfg.explicit_preference:
        preference = fields.preference_text(
            fields.as_list(row.liked), fields.as_list(row.disliked), fields.as_list(row.fav_category),
            fields.as_list(row.fav_brand), cfg.max_field_chars,
        )
    p, i = _pick_combo(rng, bool(history), bool(preference), vague)
    tpl = rng.choice(library.find(form, p, i))
    intention = vague if i == "I1" else ""
    if i == "I2":
        logged = fields.as_list(row.intents)
        # A logged query is a real one; else the target's keywords (both teach "match the query").
        intention = (fields.intention_text(logged[:1], cfg.max_field_chars) if logged and rng.random() < 0.5
                     else specific_intention(row.target_title, row.target_category, rng, cfg.max_field_chars))
    exclude = set(fields.as_list(row.seen_ids)) | set(fields.as_list(getattr(row, "later_ids", None))) | {target}
    retrieved = fields.as_list(getattr(row, "retrieved_ids", None))

    def negatives(n: int) -> list[str]:
        return training_negatives(rng, n, retrieved, catalogue, exclude, tune.retrieval_negative_share, cum_weights)

    target_title = fields.clean_value(row.target_title, cfg.max_title_chars) or ""
    ids: list[str] = []
    letters: list[str] = []
    item = ""
    if form in ("reranking", "pairwise"):
        n_neg = tune.n_negatives if form == "reranking" else 1
        ids = [target, *negatives(n_neg)]
        rng.shuffle(ids)
        letters = list(LETTERS[: len(ids)])
        answer = letters[ids.index(target)]
    elif form == "pointwise":
        positive = rng.random() < 0.5
        asked = target if positive else (negatives(1) or [target])[0]
        ids, answer = [asked], "yes" if asked == target else "no"
        item = fields.field(titles.get(asked, asked), cfg.max_title_chars)
    else:  # matching: the model names the item; the answer is the cleaned title it must produce
        # The prompt lists no candidates; the target and its negatives are kept so that validation can
        # rank them by the likelihood of their titles (the likelihood scorer's protocol).
        ids = [target, *negatives(tune.n_negatives)]
        rng.shuffle(ids)
        answer = target_title
    values = dict(
        preference=preference, intention=intention, item=item,
        candidates=fields.candidate_block(letters, [titles.get(x, x) for x in ids], cfg.max_title_chars),
    )

    def build(kept: list[str]) -> str:
        return wrap(tpl.render(history="\n".join(kept), **values))

    answer_room = max(ANSWER_TOKENS, count_tokens(tokenizer, answer) + 2)
    budget = min(cfg.max_prompt_tokens, tune.max_tokens - answer_room)
    prompt, _, _ = fit_history(build, fields.history_lines(history, cfg.max_title_chars), tokenizer, budget,
                               layout=tpl.text)
    return dict(
        user_id=row.user_id, task_form=form, template_id=tpl.id, prompt=prompt, answer=answer,
        target_item_id=target, candidate_item_ids=ids, candidate_letters=letters,
        candidate_titles=[fields.clean_value(titles.get(x, x), cfg.max_title_chars) or "" for x in ids],
    )


def build_training_examples(
    history: DataFrame,
    targets: DataFrame,
    items: DataFrame,
    intents: DataFrame | None,
    tokenizer_dir: str,
    cfg: InstructionsConfig,
    tune: TuneConfig,
    seed: int,
    retrieved: DataFrame | None = None,
    later: DataFrame | None = None,
    popularity: dict[str, float] | None = None,
) -> DataFrame:
    """One example per target user: user_id, task_form, template_id, prompt, answer, target_item_id,
    candidate_item_ids, candidate_letters. Deterministic for (inputs, seed).

    Only `history` (leave-one-out, without the target) feeds preferences, so the answer never leaks
    into the prompt except through an intention that is meant to describe it (I1/I2).

    Negatives (tune.retrieval_negative_share, tune.negative_sampling): `retrieved` (user_id, item_id,
    retrieval_rank) is the retrieval stage run on each user's history before the target; `later`
    (user_id, item_id) are the user's items after it, never drawn as negatives; `popularity` (item_id ->
    weight) makes the random draws popularity-weighted.
    """
    library = load_template_library(cfg.templates_path)
    # Negatives are drawn from the whole catalogue inside the workers, so the id -> title map travels
    # with the task (a few MB for the Amazon catalogues; a catalogue of millions would need a broadcast).
    catalogue_rows = titled(items.select("item_id"), items).select("item_id", "title").collect()
    titles = {r.item_id: r.title for r in catalogue_rows}
    catalogue = sorted(titles)
    target_meta = titled(targets.select("user_id", "item_id"), items).select(
        "user_id",
        F.col("item_id").alias("target_item_id"),
        F.col("title").alias("target_title"),
        F.col("category").alias("target_category"),
        F.col("brand").alias("target_brand"),
    )
    seen = history.groupBy("user_id").agg(F.collect_set("item_id").alias("seen_ids"))
    frame = with_user_features(target_meta.join(seen, "user_id", "left"), history, items, intents, cfg)
    if retrieved is not None:
        frame = frame.join(
            retrieved.groupBy("user_id").agg(
                F.sort_array(F.collect_list(F.struct("retrieval_rank", "item_id"))).alias("r")
            ).select("user_id", F.col("r.item_id").alias("retrieved_ids")),
            "user_id", "left",
        )
    if later is not None:
        frame = frame.join(later.groupBy("user_id").agg(F.collect_set("item_id").alias("later_ids")), "user_id", "left")
    cum_weights = None
    if popularity is not None:
        cum_weights, total = [], 0.0
        for item in catalogue:  # +1: an item nobody had in the training window can still be drawn
            total += popularity.get(item, 0.0) + 1.0
            cum_weights.append(total)
    tokenizer_dir = str(tokenizer_dir)

    return render_rows(
        frame, tokenizer_dir, library.preamble,
        lambda row, tokenizer, wrap: example_for(row, library, tokenizer, wrap, catalogue, titles, cfg, tune, seed, cum_weights),
        lambda rows: pd.DataFrame(rows, columns=COLUMNS), SCHEMA,
    )
