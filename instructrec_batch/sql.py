"""SQL over the lake with no JVM: DataFusion through deltalake's QueryBuilder.

Every existing table is registered under its name, plus `latest_recommendations`: the
recommendations of the newest run date whose `score` stage succeeded.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from .errors import InstructRecError
from .lake import SPECS, Lake


def latest_scored_run_date(lake: Lake) -> str | None:
    if not lake.exists("runs"):
        return None
    runs = lake.read_arrow("runs", columns=["run_date", "stage", "status"])
    done = runs.filter(pc.and_(pc.equal(runs["stage"], "score"), pc.equal(runs["status"], "succeeded")))
    return max(done["run_date"].to_pylist(), default=None)


def _with_latest_view(query: str, run_date: str | None) -> str:
    if "latest_recommendations" not in query:
        return query
    if run_date is None:
        raise InstructRecError("latest_recommendations is empty: no run date has a succeeded score stage yet")
    view = f"latest_recommendations AS (SELECT * FROM recommendations WHERE run_date = '{run_date}')"
    match = re.match(r"\s*with\s+", query, flags=re.IGNORECASE)
    if match:
        return f"WITH {view}, {query[match.end():]}"
    return f"WITH {view} {query}"


def run_sql(lake: Lake, query: str) -> pa.Table:
    from deltalake import DeltaTable, QueryBuilder

    builder = QueryBuilder()
    for key in SPECS:
        if lake.exists(key):
            builder.register(key, DeltaTable(lake.path(key)))
    try:
        result = builder.execute(_with_latest_view(query, latest_scored_run_date(lake)))
    except Exception as exc:  # DataFusion's message names the problem (unknown column, syntax); keep it
        raise InstructRecError(f"SQL failed: {exc}") from None
    table = pa.table(result.read_all())
    # DataFusion returns string_view; plain strings print and convert everywhere.
    return table.cast(pa.schema([pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type) for f in table.schema]))
