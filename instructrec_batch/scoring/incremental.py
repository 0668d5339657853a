"""Incremental scoring: which users' rows of an earlier run date can be copied instead of rescored.

A user's rows are decided by the prompts row (its ``fingerprint``: text, candidates in order, the fusion
features read) and by how the run reads it (this module's ``score_key``: model version, scorer, fusion
weights, top-K and the scorer's own settings). Each recommendations row stores both, combined, as
``input_fingerprint``; a user whose combined fingerprint today equals the one in the earlier partition
gets that partition's rows, with today's run date. Everything else is scored.

The driver holds two narrow columns per user (user id and fingerprint, ~100 bytes), never the prompts.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from ..config import ScoringConfig, stable_hash
from ..lake import Lake
from ..model.fusion import FusionParams

log = logging.getLogger(__name__)

# The scoring settings that change a user's rows; the others (batching, actors, retries) only change
# how fast they come.
SCORE_SETTINGS = ("scorer", "top_k", "dtype", "length_normalize", "max_input_tokens", "max_title_tokens", "fusion",
                  "explain")


def fusion_features_read(fusion: dict | None) -> tuple[str, ...]:
    """The prompts columns that a model card's fusion reads in substance (a zero weight reads nothing),
    for the prompts stage's fingerprint. ``None``: model-only scores read no feature."""
    params = FusionParams.from_card(fusion)
    if params is None:
        return ()
    weights = {"candidate_retrieval_ranks": params.rank_weight, "candidate_popularity": params.popularity_weight,
               "candidate_title_similarity": params.similarity_weight,
               "candidate_embedding_similarity": params.embedding_weight}
    return tuple(column for column, weight in weights.items() if weight)


def score_key(model_name: str, model_version: str, sc: ScoringConfig, fusion: dict | None) -> str:
    dumped = sc.model_dump(mode="json")
    settings = {name: dumped[name] for name in SCORE_SETTINGS}
    return stable_hash({"model": [model_name, model_version], "settings": settings, "fusion_weights": fusion}, 16)


def input_fingerprint(prompt_fingerprint: str | None, key: str) -> str | None:
    """What a recommendations row stores: None when the prompts row has no fingerprint (written before
    fingerprints existed), so such a user is always scored."""
    if prompt_fingerprint is None:
        return None
    return hashlib.sha256(f"{prompt_fingerprint}|{key}".encode()).hexdigest()[:32]


@dataclass
class ReusePlan:
    """Today's users split into those copied from ``source_date`` and those to score."""

    source_date: str | None
    users: int
    reused: pa.Array  # user ids (string) whose rows are copied

    @property
    def to_score(self) -> int:
        return self.users - len(self.reused)


def plan_reuse(lake: Lake, run_date: str, source_date: str | None, key: str) -> ReusePlan:
    """Compare today's prompts fingerprints with ``source_date``'s recommendations (rank-1 rows carry
    the user's fingerprint). ``source_date`` None: score everyone (``--full``, or no earlier run)."""
    today = lake.read_arrow("prompts", {"run_date": run_date}, columns=_present(lake, "prompts", ["user_id", "fingerprint"]))
    empty = pa.array([], pa.string())
    if source_date is None or "fingerprint" not in today.column_names or not lake.exists("recommendations"):
        return ReusePlan(source_date=None, users=today.num_rows, reused=empty)
    columns = _present(lake, "recommendations", ["user_id", "input_fingerprint", "rank"])
    if "input_fingerprint" not in columns:
        return ReusePlan(source_date=None, users=today.num_rows, reused=empty)
    before = lake.read_arrow("recommendations", {"run_date": source_date}, columns=columns)
    before = before.filter(pc.equal(before["rank"], 1)).select(["user_id", "input_fingerprint"])
    expected = pa.table({
        "user_id": today["user_id"],
        "input_fingerprint": pa.array([input_fingerprint(fp, key) for fp in today["fingerprint"].to_pylist()], pa.string()),
    })
    same = expected.join(before, ["user_id", "input_fingerprint"], join_type="inner")
    return ReusePlan(source_date=source_date, users=today.num_rows, reused=same["user_id"].combine_chunks())


def _present(lake: Lake, key: str, wanted: list[str]) -> list[str]:
    """The wanted columns the table has (a partition written before a column existed lacks it)."""
    stored = set(lake.delta_table(key).schema().to_arrow().names)
    return [c for c in wanted if c in stored]


def reused_rows(lake: Lake, plan: ReusePlan, run_date: str, schema: pa.Schema, batch_rows: int = 65536):
    """The source date's rows of the reused users, re-dated to ``run_date``, as batches of ``schema``
    (the staging schema: recommendations columns plus the scoring job's bookkeeping)."""
    if plan.source_date is None or len(plan.reused) == 0:
        return
    dataset = lake.delta_table("recommendations").to_pyarrow_dataset()
    wanted = (pads.field("run_date") == plan.source_date) & pads.field("user_id").isin(plan.reused)
    stored = set(dataset.schema.names)
    columns = {}
    for field in schema:
        if field.name == "run_date":
            columns[field.name] = pc.scalar(run_date).cast(field.type)
        elif field.name == "kind":
            columns[field.name] = pc.scalar("rec")
        elif field.name in stored:
            columns[field.name] = pc.field(field.name).cast(field.type)
        else:  # bookkeeping (tokens of a copied row: none spent) and quarantine-only columns
            columns[field.name] = pc.scalar(None).cast(field.type)
    for batch in dataset.scanner(columns=columns, filter=wanted, batch_size=batch_rows).to_batches():
        if batch.num_rows:
            yield pa.Table.from_batches([batch]).cast(schema)
