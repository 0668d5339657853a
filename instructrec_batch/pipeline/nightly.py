"""Running stages for a run date: order checks, --resume, run records, engines at the edges.

Spark stages (candidates, prompts) share one session; the session is stopped before Ray starts so the
two engines never hold memory at the same time on one machine.
"""

from __future__ import annotations

import logging
import re
from datetime import date

from ..config import Config
from ..errors import InstructRecError
from ..lake import Lake
from ..logs import event
from . import runs as run_records
from .stages import choose_model, stage_candidates, stage_preferences, stage_prompts, stage_score, teacher_model

log = logging.getLogger(__name__)
SPARK_STAGES = ("candidates", "prompts")


def check_run_date(run_date: str | None) -> str:
    """The run date as YYYY-MM-DD, today when not given. Only that form: Python's fromisoformat also
    takes 20261129 and ISO weeks (2026-W48-1), which would name a partition the user did not type."""
    if run_date is None:
        return date.today().isoformat()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_date):
            raise ValueError
        return date.fromisoformat(run_date).isoformat()
    except ValueError:
        raise InstructRecError(f"--run-date must be a calendar date YYYY-MM-DD, got {run_date!r}") from None


def run_stage(stage: str, lake: Lake, cfg: Config, run_date: str, resume: bool = False, spark=None) -> dict | None:
    """One stage with its bookkeeping. Returns the scoring summary for `score`, else None."""
    if resume:
        model = None
        if stage in ("prompts", "score"):
            choice = choose_model(cfg, required=False)
            model = f"{choice.name}/{choice.version}"
        elif stage == "preferences":
            model = teacher_model(cfg)[1]
        elif stage == "candidates":  # `latest` of the sequential retriever may name a newer version now
            from ..retrieval import retriever_for

            retriever = retriever_for(cfg.retrieval, cfg.model.registry_dir)
            model = f"{retriever.name}/{retriever.version}" if retriever is not None else None
        previous = run_records.can_skip(lake, cfg, run_date, stage, model)
        if previous is not None:
            run_records.record_skip(lake, cfg, run_date, stage, previous)
            return None
    run_records.require_upstream(lake, run_date, stage)
    with run_records.record_stage(lake, cfg, run_date, stage) as run:
        if stage == "candidates":
            stage_candidates(spark, lake, cfg, run)
        elif stage == "prompts":
            stage_prompts(spark, lake, cfg, run)
        elif stage == "score":
            return stage_score(lake, cfg, run)
        elif stage == "preferences":
            stage_preferences(spark, lake, cfg, run)
        else:
            raise InstructRecError(f"unknown stage {stage!r}")
    return None


def run_spark_stages(cfg: Config, run_date: str, stages: tuple[str, ...], resume: bool = False, spark=None) -> None:
    """Run Spark stages in order, in the caller's session if one is passed (spark.spark_session)."""
    from ..spark import spark_session

    with spark_session(cfg.spark, spark) as spark:
        lake = Lake(cfg.lake, spark)
        for stage in stages:
            run_stage(stage, lake, cfg, run_date, resume, spark)


def run_score(cfg: Config, run_date: str, resume: bool = False) -> dict | None:
    return run_stage("score", Lake(cfg.lake), cfg, run_date, resume)


def run_nightly(cfg: Config, run_date: str, resume: bool = False, spark=None) -> dict | None:
    event(log, "nightly: started", run_date=run_date, resume=resume, config_hash=cfg.hash())
    # The optional LLM teacher first, so tonight's prompts read its sentences (README, "Preferences").
    stages = ("preferences", *SPARK_STAGES) if cfg.preferences.in_nightly else SPARK_STAGES
    run_spark_stages(cfg, run_date, stages, resume, spark)
    summary = run_score(cfg, run_date, resume)
    event(log, "nightly: finished", run_date=run_date)
    return summary
