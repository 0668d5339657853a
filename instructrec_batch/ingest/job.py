"""The ingest stage: load the configured sources, write the input tables, count what is bad."""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..config import Config
from ..errors import GateError, InstructRecError
from ..lake import Lake, spark_schema, validate_inputs
from ..lake.sampling import seeded_users
from ..lake.schemas import INTENTS
from .amazon_games import read_games
from .amazon_reviews import read_reviews
from .generic import read_generic

log = logging.getLogger(__name__)
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"


def _need(path: Path) -> str:
    if not path.exists():
        raise InstructRecError(f"ingest source not found: {path} (check ingest.shared_data_dir)")
    return str(path)


def _sample_users(interactions: DataFrame, max_users: int | None, seed: int) -> DataFrame:
    if not max_users:
        return interactions
    return interactions.join(seeded_users(interactions, max_users, seed), "user_id", "left_semi")


QUARANTINE_COLUMNS = "table_name string, reason string, row_json string"


def load_sources(spark: SparkSession, cfg: Config) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
    """The union of every configured source as (items, interactions, intents) in the lake contract,
    plus the rows that could not enter it (table_name, reason, row_json: values that do not cast)."""
    shared = Path(cfg.ingest.shared_data_dir).expanduser()
    items_parts, inter_parts, intent_parts = [], [], []
    bad_parts = [spark.createDataFrame([], QUARANTINE_COLUMNS)]
    for source in cfg.ingest.sources:
        if source in ("games_sample", "games_full"):
            folder = SAMPLE_DIR if source == "games_sample" else shared / "amazon-games-2018"
            names = ("games_items.tsv", "games_sequences.tsv") if source == "games_sample" else ("items.tsv", "sequences.tsv")
            items, inter = read_games(spark, _need(folder / names[0]), _need(folder / names[1]))
        elif source in ("reviews_sample", "reviews_full"):
            if source == "reviews_sample":
                paths = [_need(SAMPLE_DIR / "reviews_2023.jsonl")]
            else:
                folder = shared / "amazon-reviews-2023-sample"
                paths = [_need(p) for p in sorted(folder.glob("ucsd_multicat_*.jsonl"))]
            items, inter = read_reviews(spark, paths)
        else:
            if cfg.ingest.generic is None:
                raise InstructRecError("ingest.sources has 'generic' but ingest.generic (the column mapping) is not set")
            items, inter, intents, bad = read_generic(spark, cfg.ingest.generic)
            bad_parts.append(bad)
            if intents is not None:
                intent_parts.append(intents)
        inter = _sample_users(inter, cfg.ingest.max_users, cfg.ingest.seed)
        items_parts.append(items)
        inter_parts.append(inter)
        log.info("ingest source %s loaded", source)
    if not items_parts:
        raise InstructRecError("ingest.sources is empty: nothing to load")

    def union(parts: list[DataFrame]) -> DataFrame:
        out = parts[0]
        for part in parts[1:]:
            out = out.unionByName(part)
        return out

    intents = union(intent_parts) if intent_parts else spark.createDataFrame([], spark_schema(INTENTS))
    return union(items_parts), union(inter_parts), intents, union(bad_parts)


def check_ingest_gate(rows_read: dict[str, int], quarantined: dict[str, int], reasons: list[tuple[str, str, int]],
                      max_share: float) -> None:
    """Refuse an ingest that would replace items or interactions with nothing usable, or whose rows are
    mostly quarantined: a broken export must not empty the lake that tonight's run reads."""
    top = "; ".join(f"{table}: {reason} ({count:,})" for table, reason, count in reasons[:3]) or "none"
    for table in ("items", "interactions"):
        read, bad = rows_read.get(table, 0), quarantined.get(table, 0)
        if read - bad <= 0:
            raise GateError(
                f"ingest refused: no usable {table} rows ({read:,} read, {bad:,} quarantined; top reasons: {top}); "
                f"the previous snapshots are unchanged"
            )
        if bad / read > max_share:
            raise GateError(
                f"ingest refused: {bad:,} of {read:,} {table} rows ({bad / read:.0%}) would be quarantined, above "
                f"nightly.gate.max_quarantine_share={max_share}; top reasons: {top}; the previous snapshots are unchanged"
            )


def run(spark: SparkSession, lake: Lake, cfg: Config) -> dict:
    """Write items, interactions and intents as new snapshots; return versions, row counts and the
    quarantine frame (rows that later stages will set aside, with reasons, and rows that could not be
    stored because a value does not cast). Checked before anything is replaced (check_ingest_gate)."""
    items, interactions, intents, uncastable = load_sources(spark, cfg)
    checked = validate_inputs(items, interactions, intents)
    quarantine = checked.quarantine.unionByName(uncastable).cache()
    by_reason = quarantine.groupBy("table_name", "reason").count().orderBy(F.desc("count"), "table_name", "reason").collect()
    quarantined: dict[str, int] = {}
    for row in by_reason:
        quarantined[row.table_name] = quarantined.get(row.table_name, 0) + row["count"]
    # Rows with a value that does not cast never reach the stored tables: count them as read.
    uncast = {r.table_name: r["count"] for r in uncastable.groupBy("table_name").count().collect()}
    read = {k: frame.count() + uncast.get(k, 0) for k, frame in (("items", items), ("interactions", interactions))}
    check_ingest_gate(read, quarantined, [(r.table_name, r.reason, r["count"]) for r in by_reason],
                      cfg.nightly.gate.max_quarantine_share)
    versions = {
        "items": lake.overwrite(items, "items"),
        "interactions": lake.overwrite(interactions, "interactions"),
        "intents": lake.overwrite(intents, "intents"),
    }
    # Count what was stored, not the sources: what analysts see is what we report.
    stored = {k: lake.read(k) for k in versions}
    counts = {k: frame.count() for k, frame in stored.items()}
    counts["users"] = stored["interactions"].select("user_id").distinct().count()
    return {"versions": versions, "rows": counts, "quarantine": quarantine}
