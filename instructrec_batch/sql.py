"""SQL over the lake with no JVM: DataFusion through deltalake's QueryBuilder, read-only by construction.

Every existing table is registered under its name, plus `latest_recommendations`: the
recommendations of the newest run date whose `score` stage succeeded.

DataFusion executes DDL and `COPY ... TO` as readily as queries, and such a statement can overwrite a
lake data file or read any file the process can. So a statement is checked before it reaches the
engine (`check_read_only`): one statement, a query keyword first, no writing or file-reading keyword
anywhere outside string literals and quoted identifiers, and a size cap, because very large queries
(thousands of UNION ALL terms) overflow DataFusion's planner stack and kill the process.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from .errors import InstructRecError
from .lake import SPECS, Lake

# The statements a reader needs. EXPLAIN is allowed only over a query (EXPLAIN ANALYZE runs it).
QUERY_KEYWORDS = ("SELECT", "WITH", "EXPLAIN", "SHOW", "DESCRIBE", "VALUES")
# Keywords that write, define or reach outside the registered tables, refused anywhere in a statement.
REFUSED_KEYWORDS = frozenset(
    {
        "COPY", "CREATE", "DROP", "INSERT", "UPDATE", "DELETE", "MERGE", "ALTER", "TRUNCATE",
        "SET", "RESET", "PREPARE", "EXECUTE", "DEALLOCATE", "ATTACH", "DETACH", "LOAD", "INSTALL",
        "GRANT", "REVOKE", "USE", "EXTERNAL", "LOCATION", "READ_PARQUET", "READ_CSV", "READ_JSON",
        "READ_AVRO", "PARQUET_METADATA",
    }
)
# Measured: a 5,000-term UNION ALL (95 KB) crashed DataFusion's planner; 20,000 characters is far
# more than a hand-written analyst query and far below that.
MAX_QUERY_CHARS = 20_000
MAX_UNION_TERMS = 200

# Strings, quoted identifiers and comments, which are data or prose, not statement structure.
_LITERALS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


class SqlRefused(InstructRecError):
    """A statement the read-only `sql` command does not run."""


def _structure(query: str) -> str:
    """The query with literals, quoted identifiers and comments blanked out. An unterminated quote or
    comment is refused: the engine would read it differently from this check."""
    structure = _LITERALS.sub(" ", query)
    if any(mark in structure for mark in ("'", '"', "/*")):
        raise SqlRefused("sql: unterminated string, quoted identifier or comment")
    return structure


def check_read_only(query: str) -> None:
    """Raise SqlRefused (one line naming the reason) unless ``query`` is one read-only query."""
    if len(query) > MAX_QUERY_CHARS:
        raise SqlRefused(f"sql: the query is {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    structure = _structure(query)
    statements = [s for s in structure.split(";") if s.strip()]
    if len(statements) != 1:
        raise SqlRefused(f"sql: exactly one statement is accepted, found {len(statements)}")
    words = [w.upper() for w in _WORD.findall(statements[0])]
    if not words or words[0] not in QUERY_KEYWORDS:
        first = words[0] if words else "(nothing)"
        raise SqlRefused(f"sql is read-only: a statement must start with {' / '.join(QUERY_KEYWORDS)}, not {first}")
    refused = sorted(set(words) & REFUSED_KEYWORDS)
    if refused:
        raise SqlRefused(f"sql is read-only: {', '.join(refused)} is not allowed")
    if words[0] == "EXPLAIN" and "ANALYZE" in words[:3]:
        raise SqlRefused("sql is read-only: EXPLAIN ANALYZE executes the statement; use EXPLAIN")
    unions = words.count("UNION") + words.count("INTERSECT") + words.count("EXCEPT")
    if unions >= MAX_UNION_TERMS:
        raise SqlRefused(f"sql: {unions + 1} set-operation terms; the limit is {MAX_UNION_TERMS}")


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

    check_read_only(query)
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
