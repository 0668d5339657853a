"""The LLM teacher as a Ray Data job: reviewers' latest reviews in, one sentence of taste per user out.

Same shape as the scoring job: one model per actor (scoring.concurrency actors of
scoring.num_cpus_per_actor CPUs / num_gpus_per_actor GPUs), blocks of users through the pool, progress
in users with a rate and time left. The input is one row per reviewer whose reviews changed since
their last sentence (the caller decides, pipeline/stages.py), a few hundred bytes each, so it travels
from the driver; the output is smaller still.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Config, PreferencesConfig
from ..instructions.fields import clean_sentence
from ..instructions.teacher import teacher_messages
from ..model.base import load_scoring_model
from ..model.generate import generate_chats
from ..progress import Progress

log = logging.getLogger(__name__)

OUTPUT_SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("text", pa.string()),  # null: the teacher wrote nothing usable (counted and quarantined)
    ("raw_text", pa.string()),  # what it generated, for the quarantine row
    ("source_review_ids", pa.list_(pa.string())),
    ("reviews_fingerprint", pa.int64()),
    ("n_new_tokens", pa.int32()),
])
BLOCK_USERS = 32  # users per Ray Data block: progress moves, and a retry repeats, one block at a time


class TeacherActor:
    """Callable class for ``Dataset.map_batches``: reviewers in, their generated sentences out."""

    def __init__(self, model_dir: str, preferences: dict, dtype: str, num_threads: int, device: str):
        import torch

        torch.set_num_threads(max(1, num_threads))
        self.cfg = PreferencesConfig.model_validate(preferences)
        self.model, self.tokenizer, _ = load_scoring_model(model_dir, dtype, device)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        chats = [teacher_messages(list(reviews), self.cfg.max_review_chars) for reviews in batch["reviews"]]
        written = generate_chats(self.model, self.tokenizer, chats, self.cfg.max_new_tokens, self.cfg.batch_size)
        return pd.DataFrame({
            "user_id": batch["user_id"].astype(str),
            "text": [clean_sentence(g.text, self.cfg.max_chars) for g in written],
            "raw_text": [g.text for g in written],
            "source_review_ids": [list(ids) for ids in batch["source_review_ids"]],
            "reviews_fingerprint": batch["reviews_fingerprint"].astype("int64"),
            "n_new_tokens": [g.n_new_tokens for g in written],
        })


def write_sentences(cfg: Config, reviewers: pd.DataFrame, model_dir: str, dtype: str) -> tuple[pa.Table, float]:
    """(one OUTPUT_SCHEMA row per reviewer, seconds spent generating). Needs Ray running."""
    import ray

    if reviewers.empty:
        return OUTPUT_SCHEMA.empty_table(), 0.0
    sc = cfg.scoring
    ray.data.DataContext.get_current().enable_progress_bars = False  # our own line: users, rate, time left
    started = time.time()
    ds = ray.data.from_pandas(reviewers).repartition(max(1, math.ceil(len(reviewers) / BLOCK_USERS)))
    written = ds.map_batches(
        TeacherActor,
        fn_constructor_kwargs={
            "model_dir": model_dir, "preferences": cfg.preferences.model_dump(mode="json"), "dtype": dtype,
            "num_threads": int(sc.num_cpus_per_actor), "device": "cuda" if sc.num_gpus_per_actor > 0 else "cpu",
        },
        batch_size=BLOCK_USERS,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=sc.concurrency),
        num_cpus=sc.num_cpus_per_actor,
        num_gpus=sc.num_gpus_per_actor or None,
    )
    parts = []
    with Progress("preferences", len(reviewers), "users", heartbeat=True) as progress:
        for batch in written.iter_batches(batch_format="pyarrow", batch_size=None):
            parts.append(batch.cast(OUTPUT_SCHEMA))
            progress.update(batch.num_rows)
    return pa.concat_tables(parts), time.time() - started


UNUSABLE_REASON = ("the teacher wrote no usable sentence (fewer than 3 words after cleaning); the prompts use "
                   "review snippets for this user")


class DateRows(NamedTuple):
    preferences: pa.Table  # the date's `preferences` rows: usable sentences only
    quarantine: pa.Table  # one `quarantine` row per reviewer whose sentence was unusable, with what it wrote


def date_rows(written: pa.Table, run_date: str, model_label: str, run_id: str) -> DateRows:
    """Split write_sentences' output into the lake rows of one run date: a sentence that cleaned to
    nothing is not stored (the prompts fall back to review snippets) but quarantined, never lost."""
    usable = pc.is_valid(written["text"])
    kept = written.filter(usable).drop_columns(["raw_text"])
    n = kept.num_rows
    preferences = kept.append_column("run_date", pa.array([run_date] * n, pa.string())).append_column(
        "model", pa.array([model_label] * n, pa.string()))
    unusable = written.filter(pc.invert(usable))
    n = unusable.num_rows
    quarantine = pa.table({
        "run_date": [run_date] * n, "stage": ["preferences"] * n, "table_name": ["preferences"] * n,
        "reason": [UNUSABLE_REASON] * n,
        "row_json": [json.dumps({"user_id": u, "generated": t}, ensure_ascii=False) for u, t in
                     zip(unusable["user_id"].to_pylist(), unusable["raw_text"].to_pylist())],
        "run_id": [run_id] * n,
    })
    return DateRows(preferences, quarantine)
