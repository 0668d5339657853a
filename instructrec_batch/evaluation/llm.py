"""The LLM systems: the same prompts for the untuned base model and the tuned model.

Prompts are built by the instructions stage from the *history* frame (the held-out interaction is not
in it) and this protocol's candidate set; the scorer is the scoring stage's own ``score_frame``, so the
evaluation measures exactly what the nightly job would serve.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..config import Config
from .protocols import EvalSet

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    label: str  # e.g. "smollm2-135m-instruct" or "instructrec-games:v0003"
    model_dir: str
    model: object
    tokenizer: object


def served_scorer(cfg: Config) -> str:
    """The scorer the LLM rows use for the served configuration: naive is likelihood without the packing
    (same scores, far slower), so the evaluation runs the packed one in its place."""
    return cfg.scoring.scorer if cfg.scoring.scorer != "naive" else "likelihood"


def load_model(label: str, model_dir, cfg: Config) -> LoadedModel:
    from ..model.base import load_scoring_model

    started = time.time()
    model, tokenizer, precision = load_scoring_model(str(model_dir), cfg.scoring.dtype, precision=cfg.precision)
    log.info("loaded %s (%s) from %s in %.1f s", label, precision.dtype, model_dir, time.time() - started)
    return LoadedModel(label, str(model_dir), model, tokenizer)


def build_eval_prompts(
    spark: "SparkSession",
    history: "DataFrame",
    items: "DataFrame",
    intents: "DataFrame | None",
    eval_set: EvalSet,
    tokenizer_dir: str,
    cfg: Config,
    template_id: str | None,
    teacher: "DataFrame | None" = None,
    embedding=None,
    shortlist=None,
) -> pd.DataFrame:
    """The prompts rows (pandas) for an eval set's users, candidates in the set's column order.
    ``teacher``: user_id, teacher_preference, written from the history alone (never the held-out review).
    ``embedding``: the catalogue's embedding similarity, when the fusion evaluated weighs it.
    ``shortlist``: which of a row's candidates the prompt keeps (``build_prompts``), as serving picks them.

    ``history`` must already exclude the held-out items; it is cut to these users here so that a
    1,000-user sample does not pay for prompts of every user. Candidate popularity is the share of
    every history's users, as serving computes it over the lake, not of the sample's own."""
    from pyspark.sql import functions as F

    from ..instructions import build_prompts
    from ..retrieval.popularity import item_popularity

    users = spark.createDataFrame(pd.DataFrame({"user_id": eval_set.user_ids.astype(str)}))
    candidates = spark.createDataFrame(eval_set.candidates_frame())
    own_history = history.join(F.broadcast(users), "user_id")
    own_intents = intents.join(F.broadcast(users), "user_id") if intents is not None else None
    prompts = build_prompts(own_history, items, candidates, own_intents, tokenizer_dir, cfg.instructions,
                            template_id=template_id, popularity=item_popularity(history), teacher=teacher,
                            embedding=embedding, shortlist=shortlist)
    return prompts.toPandas()


def llm_scores(eval_set: EvalSet, prompts: pd.DataFrame, loaded: LoadedModel, scorer: str, cfg: Config) -> np.ndarray:
    """[n_users, n_candidates] scores of one model with one scorer on prebuilt prompts."""
    from ..model.frame import score_frame

    started = time.time()
    scored = score_frame(prompts, loaded.model, loaded.tokenizer, cfg.scoring, scorer, label=f"{loaded.label}/{scorer}")
    log.info(
        "%s/%s scored %d users in %.1f s", loaded.label, scorer, len(prompts), time.time() - started
    )
    return eval_set.align(scored)
