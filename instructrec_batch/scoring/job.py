"""The scoring job for one run date: prompts -> Ray Data actor pool -> top-K -> recommendations.

Commit protocol (a run commits its whole partition or nothing): actors' output goes to a per-run staging
folder of Parquet; only after every block has been written is it streamed into Delta, one atomic
partition replace per table (quarantine first, recommendations last), then the staging folder is
removed. A crash before the commit leaves yesterday's partition exactly as it was.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import uuid
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from ..config import Config
from ..errors import StageOrderError
from ..lake import Lake
from .actor import STAGING_SCHEMA, ScoringActor

log = logging.getLogger(__name__)

PROMPT_COLUMNS = [
    "user_id",
    "template_id",
    "prompt",
    "candidate_item_ids",
    "candidate_letters",
    "candidate_titles",
    "candidate_retrieval_ranks",
    "candidate_popularity",
    "n_prompt_tokens",
    "is_fallback",
]


def run(
    cfg: Config,
    lake: Lake,
    run_date: str,
    model_dir: str,
    model_name: str,
    model_version: str,
    run_id: str | None = None,
    fusion: dict | None = None,
) -> dict:
    """Score every user of ``run_date`` and replace that date's recommendations. Needs Ray running
    (``ray_session``). ``fusion``: the model card's fitted fusion weights, None for model-only scores.
    Returns the run summary."""
    import ray

    started = time.time()
    run_id = run_id or uuid.uuid4().hex[:12]
    sc = cfg.scoring
    stored = set(lake.delta_table("prompts").schema().to_arrow().names)
    # Partitions written before a column existed lack it; the actor treats an absent column as nulls.
    prompts = lake.read_arrow("prompts", partition={"run_date": run_date}, columns=[c for c in PROMPT_COLUMNS if c in stored])
    if prompts.num_rows == 0:
        raise StageOrderError(f"no prompts for run_date {run_date} in {lake.path('prompts')}: run build_prompts first")
    # The driver reads one date's prompts (a few MB per thousand users) and hands blocks to the actors;
    # blocks of block_rows rows let the actor pool spread the work and retry at block granularity.
    ds = ray.data.from_arrow(prompts).repartition(max(1, math.ceil(prompts.num_rows / sc.block_rows)))
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for actor restarts, so they go through the deprecated
        # **ray_remote_args. Ray Data's default is unbounded retries, which loops forever on a block that
        # kills its actor every time (OOM); a bounded count is worth keeping until the Ray pin moves.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        scored = _score_dataset(ds, sc, model_dir, run_date, model_name, model_version, fusion)
    staging = lake.staging_dir(f"score-{run_date}")
    try:
        scored.write_parquet(str(staging))
        staged = pads.dataset(str(staging), format="parquet", schema=STAGING_SCHEMA)
        counts = _counts(staged)
        _commit(lake, staged, "quarantine", "quarantine", {"run_date": run_date, "stage": "score"}, extra={"stage": "score", "table_name": "prompts", "run_id": run_id})
        _commit(lake, staged, "rec", "recommendations", {"run_date": run_date})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.time() - started
    summary = {
        "run_id": run_id,
        "run_date": run_date,
        "scorer": sc.scorer,
        "model_name": model_name,
        "model_version": model_version,
        "fusion": fusion,
        "users": counts["users"],
        "fallback_users": counts["fallback_users"],
        "quarantined_rows": counts["quarantined_rows"],
        "recommendation_rows": counts["recommendation_rows"],
        "prompt_tokens": counts["prompt_tokens"],
        "seconds": round(seconds, 3),
        "users_per_s": round(counts["users"] / seconds, 3),
        "prompt_tokens_per_s": round(counts["prompt_tokens"] / seconds, 1),
    }
    log.info("scoring summary: %s", summary)
    return summary


def _score_dataset(ds, sc, model_dir: str, run_date: str, model_name: str, model_version: str, fusion: dict | None):
    """The lazy Ray Data plan: blocks of prompts rows through a pool of scoring actors."""
    import ray

    return ds.map_batches(
        ScoringActor,
        fn_constructor_kwargs={
            "model_dir": str(model_dir),
            "run_date": run_date,
            "model_name": model_name,
            "model_version": model_version,
            "scoring": sc.model_dump(mode="json"),
            "fusion": fusion,
            # Decided by what the actor reserved, not by what it can see: a CPU actor on a GPU node may
            # still see every GPU (RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=0 leaves CUDA_VISIBLE_DEVICES alone).
            "device": "cuda" if sc.num_gpus_per_actor > 0 else "cpu",
        },
        batch_size=sc.block_rows,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=sc.concurrency),
        num_cpus=sc.num_cpus_per_actor,
        num_gpus=sc.num_gpus_per_actor or None,
        # A dead actor (OOM, preempted node) is restarted and its blocks re-run; rows are deterministic
        # so a retry produces the same output.
        max_restarts=sc.max_retries,
        max_task_retries=sc.max_retries,
    )


def _counts(staged: pads.Dataset) -> dict:
    table = staged.to_table(columns=["kind", "user_id", "rank", "is_fallback", "n_input_tokens"])
    recs = table.filter(pc.equal(table["kind"], "rec"))
    firsts = recs.filter(pc.equal(recs["rank"], 1))
    return {
        "users": firsts.num_rows,
        "fallback_users": int(pc.sum(pc.cast(firsts["is_fallback"], pa.int64())).as_py() or 0),
        "quarantined_rows": table.num_rows - recs.num_rows,
        "recommendation_rows": recs.num_rows,
        "prompt_tokens": int(pc.sum(recs["n_input_tokens"]).as_py() or 0),
    }


def _commit(lake: Lake, staged: pads.Dataset, kind: str, key: str, partition: dict[str, str], extra: dict | None = None) -> None:
    """Stream one kind of staged rows into ``key`` as one atomic replace of ``partition``."""
    schema = lake.spec(key).schema
    extra = extra or {}
    columns = {
        f.name: (pc.scalar(extra[f.name]) if f.name in extra else pc.field(f.name)).cast(f.type) for f in schema
    }
    scanner = staged.scanner(columns=columns, filter=pc.field("kind") == kind, batch_size=65536)
    if not lake.exists(key) and scanner.count_rows() == 0:
        return  # nothing to write and nothing old to replace
    # An empty stream still replaces the partition, so a clean rerun clears yesterday's quarantine.
    lake.write_arrow(scanner.to_reader(), key, mode="overwrite", partition=partition)
