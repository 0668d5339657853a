"""Schema drift and empty inputs: a clear error naming table, column, expected and found type, both from
the library and from the real CLI (exit code 2, one line on stderr, no Python/Java stack trace). An empty `intents` table is
the normal case: the bundled sample has none, so every nightly test in this suite runs with it."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from instructrec_batch.config import load_config
from instructrec_batch.errors import GateError, SchemaError
from instructrec_batch.lake import Lake
from instructrec_batch.lake.schemas import SPECS
from instructrec_batch.pipeline.nightly import run_spark_stages
from instructrec_batch.pipeline.runs import latest_runs

from ..pipeline.conftest import small_config
from .helpers import STACK_MARKERS, config_args, run_cli, start_cli

D = "2026-11-20"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

# table -> (column, a drifted arrow type, values of that type, the message's expected and found type)
DRIFT = {
    "items": ("item_id", pa.int64(), lambda n: list(range(n)), "string", "int64"),
    "interactions": ("position", pa.string(), lambda n: [str(i) for i in range(n)], "int64", "string"),
    "intents": ("text", pa.int64(), lambda n: list(range(n)), "string", "int64"),
}


def _rows(key: str) -> dict:
    users = [f"u{u}" for u in range(4) for _ in range(3)]
    return {
        "items": {"item_id": [f"i{i}" for i in range(6)], "title": [f"Game {i}" for i in range(6)]},
        "interactions": {
            "user_id": users,
            "item_id": [f"i{(u + p) % 6}" for u in range(4) for p in range(3)],
            "position": [p for _ in range(4) for p in range(3)],
            "event_ts": [T0] * len(users),
        },
        "intents": {"user_id": ["u0"], "text": ["a racing game"], "event_ts": [T0]},
    }[key]


def write_inputs(lake: Lake, drift: str | None = None, empty: tuple[str, ...] = ()) -> None:
    """Tiny input tables written by some other producer (delta-rs, no Spark); one may drift, some be empty."""
    for key in ("items", "interactions", "intents"):
        spec = SPECS[key]
        data = _rows(key)
        fields = [spec.schema.field(name) for name in data]
        if key == drift:
            column, dtype, values, _, _ = DRIFT[key]
            data[column] = values(len(next(iter(data.values()))))
            fields = [pa.field(f.name, dtype) if f.name == column else f for f in fields]
        table = pa.table(data, schema=pa.schema(fields))
        if key in empty:
            table = table.slice(0, 0)
        write_deltalake(lake.path(key), table, mode="overwrite")


@pytest.fixture
def tiny_cfg(tmp_path, tiny_model_dir):
    return small_config(tmp_path, tiny_model_dir, extra=["spark.driver_memory=1g"])


@pytest.mark.parametrize("table", list(DRIFT))
def test_drifted_input_type_stops_the_stage_naming_table_column_types(tiny_cfg, spark, table):
    lake = Lake(tiny_cfg.lake, spark)
    write_inputs(lake, drift=table)
    column, _, _, expected, found = DRIFT[table]
    with pytest.raises(SchemaError) as err:
        run_spark_stages(tiny_cfg, D, ("candidates",), spark=spark)
    message = str(err.value)
    assert f"'{table}'" in message and f"'{column}'" in message and expected in message and found in message
    assert not lake.exists("candidates"), "nothing was written"
    outcome = latest_runs(lake, D, "candidates")[-1]
    assert outcome["status"] == "failed" and "SchemaError" in outcome["message"]


def test_empty_interactions_is_a_clear_gate_error(tiny_cfg, spark):
    """No interactions and no intents: nobody to score, said in one sentence (intents alone would be served)."""
    lake = Lake(tiny_cfg.lake, spark)
    write_inputs(lake, empty=("interactions", "intents"))
    with pytest.raises(GateError, match="0 users with clean input"):
        run_spark_stages(tiny_cfg, D, ("candidates",), spark=spark)
    assert not lake.exists("candidates")


def test_empty_items_quarantines_every_interaction_and_stops_at_the_gate(tiny_cfg, spark):
    lake = Lake(tiny_cfg.lake, spark)
    write_inputs(lake, empty=("items",))
    with pytest.raises(GateError, match="12 of 12 rows of 'interactions' were quarantined"):
        run_spark_stages(tiny_cfg, D, ("candidates",), spark=spark)
    reasons = set(lake.read_arrow("quarantine", {"run_date": D, "stage": "candidates"})["reason"].to_pylist())
    assert reasons == {"unknown item_id (not in items, or the item was quarantined)"}


def test_cli_reports_drift_and_empty_input_in_one_line_with_exit_code_2(tmp_path, tiny_model_dir):
    """The real command, one process per broken lake, all started together (one JVM start of wall time)."""
    cases = {**{f"drift-{t}": {"drift": t} for t in DRIFT}, "empty-interactions": {"empty": ("interactions", "intents")}}
    procs = {}
    for name, broken in cases.items():
        cfg = load_config(
            overrides=[
                f"lake.root={tmp_path / name / 'lake'}", f"model.registry_dir={tmp_path / name / 'models'}",
                "model.version=base", "model.base.kind=hf_dir", f"model.base.path={tiny_model_dir}",
            ]
        )
        write_inputs(Lake(cfg.lake), **broken)
        args = ["candidates", "--run-date", D, *config_args(cfg), "--set", "spark.driver_memory=1g"]
        procs[name] = start_cli(args, tmp_path / f"{name}.log")
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=400)
        stderr = stderr.decode()
        assert proc.returncode == 2, (name, proc.returncode, stderr[-3000:])
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (name, stderr[-3000:])
        assert not any(marker in stderr for marker in STACK_MARKERS), (name, stderr[-3000:])
        if name.startswith("drift-"):
            table = name.removeprefix("drift-")
            column, _, _, expected, found = DRIFT[table]
            assert errors[0] == f"error: table '{table}' column '{column}': expected type {expected}, found {found}"
        else:
            assert "0 users with clean input" in errors[0]
    assert run_cli(["candidates", "--run-date", "2026-13-45"], timeout=120).returncode == 2
