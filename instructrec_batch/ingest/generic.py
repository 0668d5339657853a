"""Any CSV/Parquet/JSONL dataset -> lake frames, driven by a column mapping in YAML (GenericSource).

The mapping names, for each lake column, the source column that holds it; unmapped optional columns
become nulls. `position` is derived from the timestamp order when the source has no explicit order.
CSV is read with RFC 4180 quoting: a quoted field may hold the delimiter, doubled quotes and newlines
(a review with a line break stays one row). A value that does not cast to its lake type (`NaN` or
`abc` as a position, a repeated header line) makes its row a quarantine row naming the column and
value; the rest of the file is ingested.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from ..config import GenericSource
from ..errors import InstructRecError
from ..lake.schemas import INTENTS, INTERACTIONS, ITEMS, TableSpec, spark_schema


def _read(spark: SparkSession, src: GenericSource, path: str) -> DataFrame:
    if src.format == "csv":
        return (
            spark.read.option("header", True).option("sep", src.csv_delimiter).option("inferSchema", False)
            .option("multiLine", True).option("quote", '"').option("escape", '"')
            .option("mode", "PERMISSIVE").csv(path)
        )
    if src.format == "parquet":
        return spark.read.parquet(path)
    return spark.read.json(path)


def _timestamp(col, unit: str):
    if unit == "iso":
        return F.try_to_timestamp(col.cast("string"))
    seconds = col.try_cast("double") / (1000.0 if unit == "ms" else 1.0)
    # Outside the years 1-9999 Spark cannot hold the instant: null, which the cast check reports.
    return F.when(F.abs(seconds) < 2.5e11, F.timestamp_seconds(seconds))


def _cast_failure(name: str, raw, cast, type_name: str):
    """A reason when a present, non-blank source value became null in the cast, else null."""
    present = raw.isNotNull() & (F.trim(raw.cast("string")) != "")
    shown = F.substring(raw.cast("string"), 1, 60)
    return F.when(present & cast.isNull(), F.concat(F.lit(f"{name}: value '"), shown, F.lit(f"' does not cast to {type_name}")))


def _map(frame: DataFrame, spec: TableSpec, mapping: dict[str, str], unit: str, path: str) -> tuple[DataFrame, DataFrame]:
    """(rows in the lake contract, quarantine rows: table_name, reason, row_json for rows with a value
    that does not cast)."""
    unknown = set(mapping) - set(spec.schema.names)
    if unknown:
        raise InstructRecError(f"mapping for '{spec.key}' names unknown lake columns: {sorted(unknown)}")
    types = {f.name: f.dataType for f in spark_schema(spec).fields}
    cols, failures = [], []
    for name in spec.schema.names:
        source = mapping.get(name)
        if source is None:
            if name in spec.required and not (spec.key == "interactions" and name == "position"):
                raise InstructRecError(f"mapping for '{spec.key}' must name a source column for '{name}'")
            cols.append(F.lit(None).cast(types[name]).alias(name))
            continue
        if source not in frame.columns:
            raise InstructRecError(
                f"{path}: column '{source}' (mapped to {spec.key}.{name}) not found; found: {', '.join(frame.columns)}"
            )
        col = F.col(f"`{source}`")
        cast = _timestamp(col, unit) if name == "event_ts" else col.try_cast(types[name])
        cols.append(cast.alias(name))
        failures.append(_cast_failure(name, col, cast, types[name].simpleString()))
    reason = F.concat_ws("; ", *failures) if failures else F.lit("")
    tagged = frame.withColumn("_cast_reason", reason)
    good = tagged.where(F.col("_cast_reason") == "").select(*cols)
    raw = [F.col(f"`{c}`") for c in frame.columns]
    bad = tagged.where(F.col("_cast_reason") != "").select(
        F.lit(spec.key).alias("table_name"), F.col("_cast_reason").alias("reason"), F.to_json(F.struct(*raw)).alias("row_json")
    )
    return good, bad


def read_generic(spark: SparkSession, src: GenericSource) -> tuple[DataFrame, DataFrame, DataFrame | None, DataFrame]:
    """(items, interactions, intents or None, quarantine rows of values that do not cast)."""
    items, bad_items = _map(_read(spark, src, src.items_path), ITEMS, src.items_columns, src.timestamp_unit, src.items_path)
    inter, bad_inter = _map(
        _read(spark, src, src.interactions_path), INTERACTIONS, src.interactions_columns, src.timestamp_unit,
        src.interactions_path,
    )
    bad = bad_items.unionByName(bad_inter)
    if "position" not in src.interactions_columns:
        if "event_ts" not in src.interactions_columns:
            raise InstructRecError("interactions mapping needs 'position' or 'event_ts' to order each user's history")
        order = Window.partitionBy("user_id").orderBy(F.col("event_ts").asc_nulls_first(), F.col("item_id"))
        inter = inter.withColumn("position", (F.row_number().over(order) - 1).cast("long"))
    intents = None
    if src.intents_path:
        intents, bad_intents = _map(
            _read(spark, src, src.intents_path), INTENTS, src.intents_columns, src.timestamp_unit, src.intents_path
        )
        bad = bad.unionByName(bad_intents)
    return items, inter, intents, bad
