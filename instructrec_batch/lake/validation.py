"""The input contract enforced: schema checks (stop with a clear error) and row checks (quarantine).

Schema problems stop the job: the message names table, column, expected and found type. Row problems
(null ids, unknown items, untitled items, duplicates) are split off into quarantine rows with a reason
and the row as JSON; the clean rows go on. All functions here are pure: frames in, frames out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import SchemaError
from .schemas import TableSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# found type -> contract types it may be cast to without losing meaning
_ARROW_WIDENING = {
    pa.int8(): {pa.int64(), pa.float64(), pa.int32()},
    pa.int16(): {pa.int64(), pa.float64(), pa.int32()},
    pa.int32(): {pa.int64(), pa.float64()},
    pa.int64(): {pa.float64()},
    pa.float32(): {pa.float64()},
    pa.large_string(): {pa.string()},
    pa.string_view(): {pa.string()},
}
_SPARK_WIDENING = {
    "tinyint": {"smallint", "int", "bigint", "double"},
    "smallint": {"int", "bigint", "double"},
    "int": {"bigint", "double"},
    "bigint": {"double"},
    "float": {"double"},
    "timestamp_ntz": {"timestamp"},
    "date": {"timestamp"},
}


def _arrow_compatible(found: pa.DataType, expected: pa.DataType) -> bool:
    if found == expected:
        return True
    if pa.types.is_timestamp(found) and pa.types.is_timestamp(expected):
        return True
    if pa.types.is_list(found) or pa.types.is_large_list(found):
        return pa.types.is_list(expected) and _arrow_compatible(found.value_type, expected.value_type)
    return expected in _ARROW_WIDENING.get(found, set())


def _missing_required(table: str, column: str, expected, found_names: list[str]) -> SchemaError:
    return SchemaError(
        f"table '{table}' is missing required column '{column}' (expected {expected}); "
        f"found columns: {', '.join(found_names) or '(none)'}"
    )


def _wrong_type(table: str, column: str, expected, found) -> SchemaError:
    return SchemaError(f"table '{table}' column '{column}': expected type {expected}, found {found}")


def conform_arrow_schema(found: pa.Schema, spec: TableSpec) -> pa.Schema:
    """The schema to read a stored table with: found types for present columns (checked against the
    contract), contract types for absent optional columns (they read as nulls)."""
    fields = []
    for field in spec.schema:
        if field.name not in found.names:
            if field.name in spec.required:
                raise _missing_required(spec.key, field.name, field.type, found.names)
            fields.append(field)
            continue
        found_type = found.field(field.name).type
        if not _arrow_compatible(found_type, field.type):
            raise _wrong_type(spec.key, field.name, field.type, found_type)
        # Spark reads strings/lists by their logical type; keep the contract type where only the
        # physical flavour differs (large_string, string_view).
        keep = found_type if found_type in _ARROW_WIDENING and field.type not in (pa.string(),) else field.type
        fields.append(pa.field(field.name, keep))
    return pa.schema(fields)


def conform_spark_frame(frame: "DataFrame", spec: TableSpec) -> "DataFrame":
    """Check a Spark frame against the contract, add absent optional columns as nulls, cast widened
    types and order the columns as the contract does."""
    from pyspark.sql import functions as F

    from .schemas import spark_schema

    target = spark_schema(spec)
    found = {f.name: f.dataType for f in frame.schema.fields}
    cols = []
    for field in target.fields:
        expected = field.dataType.simpleString()
        if field.name not in found:
            if field.name in spec.required:
                raise _missing_required(spec.key, field.name, expected, list(found))
            cols.append(F.lit(None).cast(field.dataType).alias(field.name))
            continue
        got = found[field.name].simpleString()
        if got != expected and expected not in _SPARK_WIDENING.get(got, set()):
            raise _wrong_type(spec.key, field.name, expected, got)
        cols.append(F.col(field.name).cast(field.dataType).alias(field.name) if got != expected else F.col(field.name))
    return frame.select(*cols)


# ── row-level checks ────────────────────────────────────────────────────────────────────────
@dataclass
class ValidatedInputs:
    items: "DataFrame"
    interactions: "DataFrame"
    intents: "DataFrame"
    quarantine: "DataFrame"  # table_name, reason, row_json


def _blank(col):
    from pyspark.sql import functions as F

    # Whitespace of any kind (tabs, NBSP) and invisible characters alone clean to nothing: blank too.
    return F.col(col).isNull() | (F.regexp_replace(F.col(col), r"(?U)[\s\p{C}]", "") == "")


# An id longer than this is not an id (a pasted review, a broken export); keys stay cheap to shuffle.
MAX_ID_CHARS = 256


def _bad_id(col):
    """Too long, or holding U+FFFD: the reader replaced bytes that were not UTF-8, so the stored id
    would silently differ from the source's (a different user or item)."""
    from pyspark.sql import functions as F

    return (F.length(F.col(col)) > MAX_ID_CHARS) | F.col(col).contains("\ufffd")


def _split(frame: "DataFrame", table: str, columns: list[str], rules: list) -> tuple["DataFrame", "DataFrame"]:
    """Apply (reason, bad_condition) rules in order; a row gets the first reason that matches.
    Clean rows keep `columns`; quarantined rows carry them as JSON."""
    from pyspark.sql import functions as F

    reason = F.lit(None).cast("string")
    for text, bad in reversed(rules):
        reason = F.when(bad, F.lit(text)).otherwise(reason)
    tagged = frame.withColumn("_reason", reason)
    clean = tagged.where(F.col("_reason").isNull()).select(*columns)
    bad = tagged.where(F.col("_reason").isNotNull()).select(
        F.lit(table).alias("table_name"),
        F.col("_reason").alias("reason"),
        F.to_json(F.struct(*[F.col(c) for c in columns])).alias("row_json"),
    )
    return clean, bad


def _first_per_key(frame: "DataFrame", keys: list[str], order: list[str]):
    """Flag every row after the first of its key (deterministic order) as a duplicate."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy(*keys).orderBy(*[F.col(c).asc_nulls_last() for c in order])
    return frame.withColumn("_dup", F.row_number().over(w) > 1)


def validate_inputs(items: "DataFrame", interactions: "DataFrame", intents: "DataFrame") -> ValidatedInputs:
    """Split each input table into clean rows and quarantined rows with a reason."""
    from pyspark.sql import functions as F

    item_cols, inter_cols = items.columns, interactions.columns
    clean_items, bad_items = _split(
        _first_per_key(items, ["item_id"], ["title", "category", "brand"]),
        "items",
        item_cols,
        [
            ("null item_id", _blank("item_id")),
            (f"malformed item_id (over {MAX_ID_CHARS} characters or not UTF-8)", _bad_id("item_id")),
            ("item has no title", _blank("title")),
            ("duplicate item_id", F.col("_dup")),
        ],
    )
    known = clean_items.select("item_id").withColumn("_known", F.lit(True))
    inter = _first_per_key(interactions.join(known, "item_id", "left"), ["user_id", "position"], ["item_id"])
    clean_inter, bad_inter = _split(
        inter,
        "interactions",
        inter_cols,
        [
            ("null user_id", _blank("user_id")),
            ("null item_id", _blank("item_id")),
            ("null position", F.col("position").isNull()),
            (f"malformed user_id (over {MAX_ID_CHARS} characters or not UTF-8)", _bad_id("user_id")),
            ("negative position", F.col("position") < 0),
            ("unknown item_id (not in items, or the item was quarantined)", F.col("_known").isNull()),
            ("duplicate (user_id, position)", F.col("_dup")),
        ],
    )
    clean_intents, bad_intents = _split(
        intents, "intents", intents.columns,
        [("null user_id", _blank("user_id")), (f"malformed user_id (over {MAX_ID_CHARS} characters or not UTF-8)", _bad_id("user_id")),
         ("empty intent text", _blank("text"))],
    )
    return ValidatedInputs(clean_items, clean_inter, clean_intents, bad_items.unionByName(bad_inter).unionByName(bad_intents))
