"""The real `instructrec-batch` process killed between stages, and two runs of one date at once."""

from __future__ import annotations

import json
import time

from deltalake import DeltaTable

from instructrec_batch.pipeline.nightly import SPARK_STAGES, run_nightly, run_score, run_spark_stages
from instructrec_batch.pipeline.runs import latest_runs
from tests.invariants import assert_invariants, assert_unique_keys, recs

from .helpers import STACK_MARKERS, config_args, kill_group, start_cli

D = "2026-11-20"


def _statuses(lake, stage):
    return [r["status"] for r in latest_runs(lake, D, stage)]


def test_nightly_killed_after_prompts_resumes_without_redoing_them(small_lake, spark, ray_local, tmp_path):
    cfg, lake = small_lake
    proc = start_cli(["nightly", "--run-date", D, *config_args(cfg)], tmp_path / "nightly.log")
    deadline = time.time() + 500
    while time.time() < deadline and proc.poll() is None:
        if "succeeded" in _statuses(lake, "prompts"):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the nightly ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    kill_group(proc)  # SIGKILL: the CLI, its Spark JVM and anything it started, as in a lost machine
    assert proc.returncode == -9

    # The runs table shows the crash: both Spark stages done, score at most started, never finished.
    assert _statuses(lake, "candidates") == ["running", "succeeded"]
    assert _statuses(lake, "prompts") == ["running", "succeeded"]
    assert _statuses(lake, "score") in ([], ["running"])
    assert not lake.exists("recommendations") or not recs(lake, D)
    prompts_version = lake.version("prompts")

    run_nightly(cfg, D, resume=True, spark=spark)  # what `instructrec-batch nightly --resume` runs
    assert lake.version("prompts") == prompts_version, "--resume did not redo prompts"
    assert _statuses(lake, "candidates")[-1] == "skipped" and _statuses(lake, "prompts")[-1] == "skipped"
    assert _statuses(lake, "score")[-1] == "succeeded"
    skipped = latest_runs(lake, D, "prompts")[-1]
    assert skipped["message"].startswith("--resume:") and skipped["message"].endswith("already succeeded")
    assert_invariants(lake, D, cfg.scoring.top_k)
    users = lake.read_arrow("prompts", {"run_date": D}).num_rows
    assert json.loads(latest_runs(lake, D, "score")[-1]["row_counts"])["users"] == users


def test_two_score_runs_of_one_date_at_once_never_corrupt_or_duplicate(small_lake, spark, ray_local, tmp_path):
    cfg, lake = small_lake
    run_spark_stages(cfg, D, SPARK_STAGES, spark=spark)
    run_score(cfg, D)  # yesterday's run of this date: both racers replace this partition
    before = recs(lake, D)
    version = lake.version("recommendations")

    args = ["score", "--run-date", D, *config_args(cfg)]
    procs = [start_cli(args, tmp_path / f"score{i}.log") for i in range(2)]
    results = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=500)
        results.append((proc.returncode, stderr.decode()))
    codes = sorted(code for code, _ in results)
    # Either both committed one after the other (last writer wins with the same rows), or Delta's
    # optimistic concurrency rejected the later commit and that run said so in one line.
    assert codes in ([0, 0], [0, 2]), results
    for code, stderr in results:
        assert not any(marker in stderr for marker in STACK_MARKERS), stderr[-3000:]
        if code == 2:
            errors = [line for line in stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "another run committed to" in errors[0], stderr[-3000:]

    # The table reads cleanly with delta-rs, Spark and the invariants; nothing doubled.
    table = DeltaTable(lake.path("recommendations"))
    assert table.version() == version + (2 if codes == [0, 0] else 1)
    assert_unique_keys(table.to_pyarrow_table().to_pylist())
    assert recs(lake, D) == before
    assert lake.read("recommendations", {"run_date": D}).count() == len(before)
    assert_invariants(lake, D, cfg.scoring.top_k)
    outcomes = [r["status"] for r in latest_runs(lake, D, "score") if r["status"] != "running"]
    assert outcomes.count("succeeded") == 1 + codes.count(0) and outcomes.count("failed") == codes.count(2)


def test_a_commit_that_loses_the_race_is_a_clear_concurrent_run_error(tmp_path, monkeypatch):
    """The conflict branch made deterministic: another run commits the same partition between this
    run's read of the table and its commit. Delta's optimistic concurrency rejects the later commit;
    the adapter says so (ConcurrentRunError, which the CLI prints as one line with exit code 2)."""
    import pyarrow as pa
    import pytest
    from deltalake import write_deltalake as real_write

    from instructrec_batch.config import LakeConfig
    from instructrec_batch.errors import ConcurrentRunError
    from instructrec_batch.lake import Lake
    from instructrec_batch.lake import adapter

    lake = Lake(LakeConfig(root=str(tmp_path / "lake"), backend="delta-rs"))
    spec = lake.spec("recommendations")

    def partition(score: float) -> pa.Table:
        rows = [{"run_date": D, "user_id": f"u{u}", "rank": r, "item_id": f"i{r}", "score": score, "is_fallback": False}
                for u in range(3) for r in (1, 2)]
        return pa.Table.from_pylist(rows, schema=spec.schema)

    lake.write_arrow(partition(0.0), "recommendations", mode="overwrite", partition={"run_date": D})
    read_version = lake.version("recommendations")

    def racing_write(path, data, **kwargs):
        real_write(path, partition(1.0), **kwargs)  # the other run wins the race...
        return real_write(DeltaTable(path, version=read_version), data, **kwargs)  # ...we commit from our read

    monkeypatch.setattr(adapter, "write_deltalake", racing_write)
    with pytest.raises(ConcurrentRunError, match="another run committed to 'recommendations'"):
        lake.write_arrow(partition(2.0), "recommendations", mode="overwrite", partition={"run_date": D})
    monkeypatch.undo()

    table = DeltaTable(lake.path("recommendations")).to_pyarrow_table()
    assert table.num_rows == 6 and set(table["score"].to_pylist()) == {1.0}, "the winner's rows, once"
    assert_unique_keys(table.to_pylist())
