"""The lake's contract: every table's columns and types, in one place.

Input tables (written by ingest or by any other producer) are snapshots; output tables are partitioned
by ``run_date`` (a ``YYYY-MM-DD`` string, so that analysts' ``WHERE run_date = '2026-11-22'`` works the
same in Spark SQL, DataFusion, Trino and DuckDB). Arrow schemas are the source of truth; Spark schemas
are derived from them so the two can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

ts = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    key: str  # the config name (cfg.lake.tables.<key>)
    schema: pa.Schema
    required: tuple[str, ...]  # columns that must be present and non-null in every row
    partition_by: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # input columns a producer may leave out (filled with nulls)


ITEMS = TableSpec(
    "items",
    pa.schema(
        [
            ("item_id", pa.string()),
            ("title", pa.string()),
            ("category", pa.string()),
            ("brand", pa.string()),
            ("description", pa.string()),
            ("price", pa.float64()),
        ]
    ),
    required=("item_id", "title"),
    optional=("category", "brand", "description", "price"),
)

INTERACTIONS = TableSpec(
    "interactions",
    pa.schema(
        [
            ("user_id", pa.string()),
            ("item_id", pa.string()),
            # Chronological order within the user (0 = oldest). Sources with timestamps derive it.
            ("position", pa.int64()),
            ("event_ts", ts),
            ("rating", pa.float64()),
            ("review_title", pa.string()),
            ("review_text", pa.string()),
        ]
    ),
    required=("user_id", "item_id", "position"),
    optional=("event_ts", "rating", "review_title", "review_text"),
)

INTENTS = TableSpec(
    "intents",
    pa.schema([("user_id", pa.string()), ("text", pa.string()), ("event_ts", ts)]),
    required=("user_id", "text"),
    optional=("event_ts",),
)

CANDIDATES = TableSpec(
    "candidates",
    pa.schema(
        [
            ("run_date", pa.string()),
            ("user_id", pa.string()),
            ("item_id", pa.string()),
            ("retrieval_rank", pa.int32()),
            ("retrieval_score", pa.float64()),
            # Who offered the item: cooccurrence, sequential, both ("cooccurrence+sequential"), als, popularity.
            ("source", pa.string()),
            # Each personal source's rank and score (null where it did not offer the item): features the
            # reranker may read. Absent in partitions written before the sequential retriever; read as nulls.
            ("cooccurrence_rank", pa.int32()),
            ("cooccurrence_score", pa.float64()),
            ("sequential_rank", pa.int32()),
            ("sequential_score", pa.float64()),
            # The item of the user's history that most supports the candidate (the co-occurrence seed
            # that contributed most); null for candidates only the sequence model or popularity offered.
            ("reason_item_id", pa.string()),
            # A hash of the user's interactions and the retrieval settings, and the date the list was
            # computed: a later date keeps the list while the hash matches (retrieval/reuse.py).
            ("retrieval_fingerprint", pa.int64()),
            ("retrieved_date", pa.string()),
        ]
    ),
    required=("run_date", "user_id", "item_id", "retrieval_rank"),
    partition_by=("run_date",),
)

PROMPTS = TableSpec(
    "prompts",
    pa.schema(
        [
            ("run_date", pa.string()),
            ("user_id", pa.string()),
            ("template_id", pa.string()),
            ("prompt", pa.string()),  # null for fallback users (no history): nothing to ask the model
            ("candidate_item_ids", pa.list_(pa.string())),
            ("candidate_letters", pa.list_(pa.string())),
            ("candidate_titles", pa.list_(pa.string())),
            # Aligned with candidate_item_ids: what score fusion reads (model/fusion.py). Absent in
            # partitions written before fusion existed; they read as nulls and are scored model-only.
            ("candidate_retrieval_ranks", pa.list_(pa.int32())),
            ("candidate_popularity", pa.list_(pa.float64())),
            # Absent in partitions written before it existed: fused without it (scoring/actor.py).
            ("candidate_title_similarity", pa.list_(pa.float64())),
            # Null where the served fusion does not weigh it (computing it needs the base model's
            # title vectors, model/embeddings.py) and in partitions written before it existed.
            ("candidate_embedding_similarity", pa.list_(pa.float64())),
            # Aligned with candidate_item_ids: why each was offered (retrieval/cooccurrence.py,
            # instructions/fields.py reason_text); scoring copies the served items' into recommendations.
            ("candidate_reason_item_ids", pa.list_(pa.string())),
            ("candidate_reasons", pa.list_(pa.string())),
            ("n_prompt_tokens", pa.int32()),
            ("n_history_items", pa.int32()),
            ("is_fallback", pa.bool_()),
            # A user with intents and no history, asked with an intention-only (P0) prompt.
            ("cold_start", pa.bool_()),
            # A hash of everything that decides the user's scores (instructions/prompts.py,
            # with_fingerprint): scoring reuses yesterday's rows of a user whose fingerprint is unchanged.
            ("fingerprint", pa.string()),
        ]
    ),
    required=("run_date", "user_id", "candidate_item_ids"),
    partition_by=("run_date",),
)

RECOMMENDATIONS = TableSpec(
    "recommendations",
    pa.schema(
        [
            ("run_date", pa.string()),
            ("user_id", pa.string()),
            ("rank", pa.int32()),
            ("item_id", pa.string()),
            ("score", pa.float64()),
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("template_id", pa.string()),
            ("scorer", pa.string()),
            ("is_fallback", pa.bool_()),
            # The prompts fingerprint combined with what the scoring run read it with (model version,
            # scorer, fusion, top-K: scoring/incremental.py). Equal fingerprints mean equal rows.
            ("input_fingerprint", pa.string()),
            # Why the item is recommended: the history item behind it (null when none) and a short
            # sentence built from it or from the retrieval source ("no reason recorded" when unknown).
            ("reason_item_id", pa.string()),
            ("reason", pa.string()),
            # Ranked by the model from the user's stated need alone (intents, no history); is_fallback
            # rows (neither) keep the popularity order.
            ("cold_start", pa.bool_()),
            # The model's own sentence on why the top-1 suits the user (scoring.explain.generate: rank 1
            # of model-ranked users only; null otherwise).
            ("explanation", pa.string()),
        ]
    ),
    required=("run_date", "user_id", "rank", "item_id"),
    partition_by=("run_date",),
)

PREFERENCES = TableSpec(
    "preferences",
    pa.schema(
        [
            ("run_date", pa.string()),
            ("user_id", pa.string()),
            # One sentence of the user's taste written by a generation model from their reviews, cleaned
            # like any prompt field (instructions/teacher.py).
            ("text", pa.string()),
            ("model", pa.string()),  # the teacher: name/version, or the folder it was loaded from
            # The reviews it read: a review is its user and item here, so the reviewed items' ids.
            ("source_review_ids", pa.list_(pa.string())),
            # A hash of those reviews: a sentence is current while the user's reviews hash the same.
            ("reviews_fingerprint", pa.int64()),
            ("n_new_tokens", pa.int32()),
        ]
    ),
    required=("run_date", "user_id", "text", "model", "reviews_fingerprint"),
    partition_by=("run_date",),
)

QUARANTINE = TableSpec(
    "quarantine",
    pa.schema(
        [
            ("run_date", pa.string()),
            ("stage", pa.string()),
            ("table_name", pa.string()),
            ("reason", pa.string()),
            ("row_json", pa.string()),
            ("run_id", pa.string()),
        ]
    ),
    required=("run_date", "stage", "table_name", "reason"),
    partition_by=("run_date", "stage"),
)

RUNS = TableSpec(
    "runs",
    pa.schema(
        [
            ("run_id", pa.string()),
            ("run_date", pa.string()),
            ("stage", pa.string()),
            ("status", pa.string()),  # running | succeeded | failed | skipped | abandoned
            ("started_at", ts),
            ("ended_at", ts),
            ("input_versions", pa.string()),  # JSON {table: delta version}
            ("row_counts", pa.string()),  # JSON {name: count}
            ("quarantine_count", pa.int64()),
            ("model_version", pa.string()),
            ("config_hash", pa.string()),
            ("message", pa.string()),
        ]
    ),
    required=("run_id", "run_date", "stage", "status"),
)

EVAL_RUNS = TableSpec(
    "eval_runs",
    pa.schema(
        [
            ("run_id", pa.string()),
            ("dataset", pa.string()),
            ("input_versions", pa.string()),
            ("protocol", pa.string()),
            ("system", pa.string()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            ("n_users", pa.int64()),
            ("model_version", pa.string()),
            ("config_hash", pa.string()),
            ("created_at", ts),
        ]
    ),
    required=("run_id", "protocol", "system", "metric"),
)

SPECS: dict[str, TableSpec] = {
    s.key: s for s in (ITEMS, INTERACTIONS, INTENTS, CANDIDATES, PROMPTS, RECOMMENDATIONS, PREFERENCES, QUARANTINE, RUNS,
                       EVAL_RUNS)
}
INPUT_TABLES = ("items", "interactions", "intents")


def spark_schema(spec: TableSpec):
    """The Spark StructType of a table, derived from its Arrow schema."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(spec.schema)
