"""The scoring job for one run date: prompts -> Ray Data actor pool -> top-K -> recommendations.

Incremental (``incremental.py``): users whose inputs are unchanged since the reused run date get that
date's rows copied; Ray Data reads only the other users' prompts from the date's Parquet files.

Commit protocol (a run commits its whole partition or nothing): copied rows and the actors' output go
to a per-run staging folder of Parquet; only after every user is there is it streamed into Delta, one
atomic partition replace per table (quarantine first, recommendations last), then the staging folder
is removed. A crash before the commit leaves the partitions exactly as they were.
"""

from __future__ import annotations

import logging
import math
import resource
import shutil
import time
import uuid
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ..config import Config
from ..errors import StageOrderError
from ..lake import Lake
from ..model.fusion import FusionParams, needs_model_pass
from ..progress import Progress
from .actor import STAGING_SCHEMA, ScoringActor
from .incremental import ReusePlan, plan_reuse, reused_rows, score_key

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
    "candidate_title_similarity",
    "candidate_embedding_similarity",
    "candidate_reason_item_ids",
    "candidate_reasons",
    "n_prompt_tokens",
    "is_fallback",
    "cold_start",
    "fingerprint",
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
    reuse_from: str | None = None,
) -> dict:
    """Score the users of ``run_date`` and replace that date's recommendations. Needs Ray running
    (``ray_session``). ``fusion``: the model card's fitted fusion weights, None for model-only scores.
    ``reuse_from``: an earlier run date whose rows are copied for users whose inputs are unchanged
    (``incremental.py``); None scores everyone. Returns the run summary."""
    started = time.time()
    run_id = run_id or uuid.uuid4().hex[:12]
    sc = cfg.scoring
    files = lake.files("prompts", {"run_date": run_date})
    if not files:
        raise StageOrderError(f"no prompts for run_date {run_date} in {lake.path('prompts')}: run build_prompts first")
    precision = _resolve_precision(cfg, model_dir)
    sc = sc.model_copy(update={"dtype": precision["dtype"]})  # every actor uses the one measured choice
    key = score_key(model_name, model_version, sc, fusion)
    plan = plan_reuse(lake, run_date, reuse_from, key)
    log.info("score %s: %d users, %d unchanged since %s (copied), %d to score", run_date, plan.users,
             len(plan.reused), plan.source_date or "-", plan.to_score)
    staging = lake.staging_dir(f"score-{run_date}")
    staging.mkdir(parents=True)
    try:
        for i, table in enumerate(reused_rows(lake, plan, run_date, STAGING_SCHEMA)):
            pq.write_table(table, staging / f"reused-{i:05d}.parquet")
        scoring_started = time.time()
        if plan.to_score:
            prompts = _prompts_dataset(files, plan, sc.block_rows)
            with warnings.catch_warnings():
                # Ray 2.60 has no named parameter for actor restarts, so they go through the deprecated
                # **ray_remote_args. Ray Data's default is unbounded retries, which loops forever on a
                # block that kills its actor every time (OOM); a bounded count is worth keeping until
                # the Ray pin moves.
                warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
                scored = _score_dataset(prompts, sc, model_dir, run_date, model_name, model_version, fusion, key)
            _stream_to_staging(scored, staging, Progress(f"score {run_date}", plan.to_score, "users", heartbeat=True))
        scoring_seconds = time.time() - scoring_started
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
        "model_pass": needs_model_pass(FusionParams.from_card(fusion)),
        "precision": precision,
        "reused_from": plan.source_date,
        "users": counts["users"],
        "users_reused": len(plan.reused),
        "users_scored": plan.to_score,
        "fallback_users": counts["fallback_users"],
        "cold_start_users": counts["cold_start_users"],
        "quarantined_rows": counts["quarantined_rows"],
        "recommendation_rows": counts["recommendation_rows"],
        "prompt_tokens": counts["prompt_tokens"],
        "seconds": round(seconds, 3),
        "scoring_seconds": round(scoring_seconds, 3),
        # Rates of the work done: scored users over the time spent scoring them.
        "users_per_s": round(plan.to_score / scoring_seconds, 3) if plan.to_score and scoring_seconds > 0 else None,
        "prompt_tokens_per_s": round(counts["prompt_tokens"] / scoring_seconds, 1) if plan.to_score and scoring_seconds > 0 else None,
        # The driver's peak resident memory over its life (Ray workers are other processes): it should
        # not grow with the number of users, since prompts go from files to workers.
        "driver_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    log.info("scoring summary: %s", summary)
    return summary


def _resolve_precision(cfg: Config, model_dir: str) -> dict:
    """The scoring dtype (``model/device.py``): explicit, or for ``auto`` measured by a Ray task that
    holds what one scoring actor holds (its CPUs, its GPU), so the matmuls are timed on the threads
    and device the actors will have. Cached per host, so this is a lookup after the first night."""
    from ..model.device import PrecisionChoice

    sc, pc_cfg = cfg.scoring, cfg.precision
    if sc.dtype != "auto":
        return PrecisionChoice(sc.dtype, "explicit").record()
    import ray

    def probe() -> dict:
        import torch

        from ..model.device import choose_precision, model_shapes

        torch.set_num_threads(max(1, int(sc.num_cpus_per_actor)))
        device = "cuda" if sc.num_gpus_per_actor > 0 else "cpu"
        return choose_precision("auto", device, *model_shapes(model_dir), pc_cfg.cache_file,
                                pc_cfg.bf16_min_speedup).record()

    task = ray.remote(probe).options(num_cpus=sc.num_cpus_per_actor, num_gpus=sc.num_gpus_per_actor or None)
    choice = ray.get(task.remote())
    log.info("scoring precision: %s", choice)
    return choice


def _prompts_dataset(files: list[str], plan: ReusePlan, block_rows: int):
    """Ray Data reads the date's prompts files itself (workers read, the driver only lists the files),
    leaving out the users whose rows are copied, in blocks of ``block_rows`` users."""
    import ray

    # Our own progress line replaces Ray Data's block counter ("MapBatches(ScoringActor): 0/1"), which
    # tells a person reading the log neither users, rate nor time left.
    ray.data.DataContext.get_current().enable_progress_bars = False
    present = set(pq.read_schema(files[0]).names)  # a partition written before a column existed lacks it
    prompts = ray.data.read_parquet(files, partitioning=None).select_columns([c for c in PROMPT_COLUMNS if c in present])
    if len(plan.reused):
        from ray.data.expressions import col

        prompts = prompts.filter(expr=col("user_id").not_in(plan.reused.to_pylist()))
    # A file is one block (one row group); an actor task takes a whole block and its output leaves it
    # only when the block is done. Blocks of block_rows spread the users over the actor pool, bound a
    # retry to one block, and let progress move a block at a time.
    return prompts.repartition(max(1, math.ceil(plan.to_score / block_rows)))


def _stream_to_staging(scored, staging: Path, progress: Progress) -> None:
    """Pull the actors' output through the driver into the staging folder, one file per block: output
    is ~1 KB per user, and counting it here gives exact progress (users, rate, time left) for free."""
    with progress:
        for i, batch in enumerate(scored.iter_batches(batch_format="pyarrow", batch_size=None)):
            pq.write_table(batch.cast(STAGING_SCHEMA), staging / f"scored-{i:05d}.parquet")
            kinds, ranks = batch["kind"], batch["rank"]
            users = pc.sum(pc.or_kleene(pc.equal(kinds, "quarantine"), pc.equal(ranks, 1)).cast(pa.int64())).as_py()
            progress.update(int(users or 0))


def _score_dataset(ds, sc, model_dir: str, run_date: str, model_name: str, model_version: str, fusion: dict | None,
                   key: str):
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
            "score_key": key,
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
    table = staged.to_table(columns=["kind", "user_id", "rank", "is_fallback", "cold_start", "n_input_tokens"])
    recs = table.filter(pc.equal(table["kind"], "rec"))
    firsts = recs.filter(pc.equal(recs["rank"], 1))
    return {
        "users": firsts.num_rows,
        "fallback_users": int(pc.sum(pc.cast(firsts["is_fallback"], pa.int64())).as_py() or 0),
        "cold_start_users": int(pc.sum(pc.cast(firsts["cold_start"], pa.int64())).as_py() or 0),
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
