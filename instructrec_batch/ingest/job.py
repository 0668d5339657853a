"""The ingest stage: load the configured sources, write the input tables, count what is bad."""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..config import Config
from ..errors import InstructRecError
from ..lake import Lake, spark_schema, validate_inputs
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
    users = (
        interactions.select("user_id").distinct()
        .orderBy(F.xxhash64("user_id", F.lit(seed)), "user_id")
        .limit(max_users)
    )
    return interactions.join(users, "user_id", "left_semi")


def load_sources(spark: SparkSession, cfg: Config) -> tuple[DataFrame, DataFrame, DataFrame]:
    """The union of every configured source as (items, interactions, intents) in the lake contract."""
    shared = Path(cfg.ingest.shared_data_dir).expanduser()
    items_parts, inter_parts, intent_parts = [], [], []
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
            items, inter, intents = read_generic(spark, cfg.ingest.generic)
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
    return union(items_parts), union(inter_parts), intents


def run_ingest(spark: SparkSession, lake: Lake, cfg: Config) -> dict:
    """Write items, interactions and intents as new snapshots; return versions, row counts and the
    quarantine frame (rows that later stages will set aside, with reasons)."""
    items, interactions, intents = load_sources(spark, cfg)
    versions = {
        "items": lake.overwrite(items, "items"),
        "interactions": lake.overwrite(interactions, "interactions"),
        "intents": lake.overwrite(intents, "intents"),
    }
    # Count and check what was stored, not the sources: what analysts see is what we report.
    stored = {k: lake.read(k) for k in versions}
    checked = validate_inputs(stored["items"], stored["interactions"], stored["intents"])
    counts = {k: frame.count() for k, frame in stored.items()}
    counts["users"] = stored["interactions"].select("user_id").distinct().count()
    return {"versions": versions, "rows": counts, "quarantine": checked.quarantine}
