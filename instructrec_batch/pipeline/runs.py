"""The `runs` table: every stage records its start and its end (succeeded / failed / skipped).

Two rows per stage run (status `running`, then the outcome) so that a process killed mid-stage
still leaves a trace: a `running` row with no outcome is a crash. Readers take the newest row of a run.
The running row names its process (``owner host:pid``); the next run of that stage marks such a row
`abandoned` once that process is provably gone, and removes the staging folders it left.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

from ..config import Config, stable_hash
from ..errors import StageOrderError
from ..lake import Lake
from ..lake.adapter import owner_is_dead, process_owner
from ..logs import event

log = logging.getLogger(__name__)

# Sections no nightly stage reads: engines and where logs go change how a stage runs, not what it
# writes; the other jobs' sections belong to them. A stage's config hash covers every other section
# except the ones listed for it below, so a knob added later is covered unless someone proves it
# irrelevant (the safe direction: an unneeded rerun, never a stale skip).
NEVER_READ = ("lake", "spark", "ray", "logging", "tune", "evaluation")
NOT_READ_BY = {
    "ingest": ("retrieval", "instructions", "model", "scoring", "nightly", "precision", "preferences"),
    "candidates": ("ingest", "instructions", "model", "scoring", "precision", "preferences"),
    # prompts: scoring.scorer decides the prompt form (matching or reranking), so scoring is covered;
    # preferences: its review window decides which teacher sentences are current.
    "prompts": ("ingest", "precision"),
    "score": ("ingest", "retrieval", "instructions", "preferences"),
    "preferences": ("ingest", "retrieval", "instructions", "nightly"),
}
# What each stage reads from the lake (versions recorded; resume requires them unchanged).
STAGE_INPUTS = {
    "ingest": (),
    "candidates": ("items", "interactions", "intents"),
    "prompts": ("items", "interactions", "intents", "candidates", "preferences"),
    "preferences": ("items", "interactions"),
    "score": ("prompts",),
}
UPSTREAM = {"prompts": "candidates", "score": "prompts"}


def stage_sections(stage: str) -> tuple[str, ...]:
    """The config sections whose values a stage's output may depend on (see NOT_READ_BY)."""
    skip = set(NEVER_READ) | set(NOT_READ_BY.get(stage, ()))
    return tuple(name for name in Config.model_fields if name not in skip)


def stage_config_hash(cfg: Config, stage: str) -> str:
    dump = cfg.model_dump(mode="json")
    return stable_hash({s: dump[s] for s in stage_sections(stage)}, 12)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class StageRun:
    """Mutable record a stage fills in while it runs (counts, model version)."""

    run_id: str
    run_date: str
    stage: str
    config_hash: str
    input_versions: dict
    started_at: datetime = field(default_factory=_now)
    row_counts: dict = field(default_factory=dict)
    quarantine_count: int = 0
    model_version: str | None = None

    def row(self, status: str, message: str | None = None, ended: bool = False) -> dict:
        return {
            "run_id": self.run_id,
            "run_date": self.run_date,
            "stage": self.stage,
            "status": status,
            "started_at": self.started_at,
            "ended_at": _now() if ended else None,
            "input_versions": json.dumps(self.input_versions, sort_keys=True),
            "row_counts": json.dumps(self.row_counts, sort_keys=True),
            "quarantine_count": self.quarantine_count,
            "model_version": self.model_version,
            "config_hash": self.config_hash,
            "message": message,
        }


def latest_runs(lake: Lake, run_date: str, stage: str) -> list[dict]:
    """Rows of the runs table for one date and stage, newest last (no JVM needed)."""
    if not lake.exists("runs"):
        return []
    import pyarrow.compute as pc

    table = lake.read_arrow("runs")
    mask = pc.and_(pc.equal(table["run_date"], run_date), pc.equal(table["stage"], stage))
    return _newest_last(table.filter(mask).to_pylist())


def _newest_last(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["started_at"], r["ended_at"] is not None, r["ended_at"] or r["started_at"]))


def _last_finished(rows: list[dict]) -> dict | None:
    """The newest succeeded/failed row of one (date, stage)'s rows."""
    finished = [r for r in _newest_last(rows) if r["status"] in ("succeeded", "failed")]
    return finished[-1] if finished else None


def last_outcome(lake: Lake, run_date: str, stage: str) -> dict | None:
    """The newest finished (succeeded/failed) record of a stage for a date."""
    return _last_finished(latest_runs(lake, run_date, stage))


def last_succeeded_date(lake: Lake, stage: str, on_or_before: str) -> str | None:
    """The latest run date, not after ``on_or_before``, whose ``stage`` last finished successfully
    (the same date counts: a rerun reuses its own rows where nothing changed)."""
    if not lake.exists("runs"):
        return None
    import pyarrow.compute as pc

    table = lake.read_arrow("runs", columns=["run_date", "stage", "status", "started_at", "ended_at"])
    table = table.filter(pc.and_(pc.equal(table["stage"], stage), pc.less_equal(table["run_date"], on_or_before)))
    by_date: dict[str, list[dict]] = {}
    for row in table.to_pylist():  # one read of the table, not one per date
        by_date.setdefault(row["run_date"], []).append(row)
    for run_date in sorted(by_date, reverse=True):
        outcome = _last_finished(by_date[run_date])
        if outcome is not None and outcome["status"] == "succeeded":
            return run_date
    return None


def require_upstream(lake: Lake, run_date: str, stage: str) -> None:
    upstream = UPSTREAM.get(stage)
    if upstream is None:
        return
    outcome = last_outcome(lake, run_date, upstream)
    if outcome is None or outcome["status"] != "succeeded":
        state = "never ran" if outcome is None else f"last {outcome['status']} ({outcome['message']})"
        raise StageOrderError(
            f"stage '{stage}' for run date {run_date} needs '{upstream}' to have succeeded first; it {state}. "
            f"Run: instructrec-batch {upstream} --run-date {run_date}"
        )


def can_skip(lake: Lake, cfg: Config, run_date: str, stage: str, model_version: str | None = None) -> dict | None:
    """--resume: the stage's last outcome succeeded with the same inputs, the same config and (for
    stages that use a model) the same resolved model: `latest` may name a newer version by now."""
    outcome = last_outcome(lake, run_date, stage)
    if outcome is None or outcome["status"] != "succeeded":
        return None
    if model_version is not None and outcome["model_version"] != model_version:
        return None
    same_cfg = outcome["config_hash"] == stage_config_hash(cfg, stage)
    same_inputs = json.loads(outcome["input_versions"]) == {
        k: v for k, v in lake.versions(STAGE_INPUTS[stage]).items()
    }
    return outcome if same_cfg and same_inputs else None


@contextmanager
def record_stage(lake: Lake, cfg: Config, run_date: str, stage: str, run_id: str | None = None) -> Iterator[StageRun]:
    run = StageRun(
        run_id=run_id or f"{run_date}-{stage}-{uuid.uuid4().hex[:8]}",
        run_date=run_date,
        stage=stage,
        config_hash=stage_config_hash(cfg, stage),
        input_versions=lake.versions(STAGE_INPUTS[stage]),
    )
    started = time.time()
    mark_abandoned(lake, run_date, stage)
    lake.remove_dead_staging()
    lake.append_rows("runs", [run.row("running", f"owner {process_owner()}")])
    event(log, f"{stage}: started", run_date=run_date, run_id=run.run_id)
    try:
        yield run
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"[:2000]
        lake.append_rows("runs", [run.row("failed", message, ended=True)])
        log.error(f"{stage}: failed after {time.time() - started:.1f}s: {message}")
        raise
    lake.append_rows("runs", [run.row("succeeded", ended=True)])
    event(log, f"{stage}: succeeded in {time.time() - started:.1f}s", run_date=run_date, **run.row_counts)


def mark_abandoned(lake: Lake, run_date: str, stage: str) -> list[str]:
    """Append an `abandoned` outcome for each running record of (date, stage) whose process is dead."""
    rows = latest_runs(lake, run_date, stage)
    finished = {r["run_id"] for r in rows if r["status"] != "running"}
    dead = [
        r for r in rows
        if r["status"] == "running" and r["run_id"] not in finished
        and owner_is_dead((r["message"] or "").removeprefix("owner "))
    ]
    if dead:
        lake.append_rows("runs", [
            {**r, "status": "abandoned", "ended_at": _now(), "message": f"{r['message']} died before finishing"}
            for r in dead
        ])
        log.warning("%s %s: marked %d runs abandoned (their process is gone): %s", run_date, stage, len(dead),
                    [r["run_id"] for r in dead])
    return [r["run_id"] for r in dead]


def record_skip(lake: Lake, cfg: Config, run_date: str, stage: str, previous: dict) -> None:
    run = StageRun(
        run_id=f"{run_date}-{stage}-{uuid.uuid4().hex[:8]}",
        run_date=run_date,
        stage=stage,
        config_hash=stage_config_hash(cfg, stage),
        input_versions=lake.versions(STAGE_INPUTS[stage]),
    )
    lake.append_rows("runs", [run.row("skipped", f"--resume: {previous['run_id']} already succeeded", ended=True)])
    event(log, f"{stage}: skipped (--resume; {previous['run_id']} succeeded with the same inputs and config)")
