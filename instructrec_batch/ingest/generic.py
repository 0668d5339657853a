"""Any CSV/Parquet/JSONL dataset -> lake frames, driven by a column mapping in YAML (GenericSource).

The mapping names, for each lake column, the source column that holds it; unmapped optional columns
become nulls. `position` is derived from the timestamp order when the source has no explicit order.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from ..config import GenericSource
from ..errors import InstructRecError
from ..lake.schemas import INTENTS, INTERACTIONS, ITEMS, TableSpec, spark_schema


def _read(spark: SparkSession, src: GenericSource, path: str) -> DataFrame:
    if src.format == "csv":
        return spark.read.option("header", True).option("sep", src.csv_delimiter).option("inferSchema", False).csv(path)
    if src.format == "parquet":
        return spark.read.parquet(path)
    return spark.read.json(path)


def _timestamp(col, unit: str):
    if unit == "iso":
        return F.to_timestamp(col)
    seconds = col.cast("double") / (1000.0 if unit == "ms" else 1.0)
    return F.timestamp_seconds(seconds)


def _map(frame: DataFrame, spec: TableSpec, mapping: dict[str, str], unit: str, path: str) -> DataFrame:
    unknown = set(mapping) - set(spec.schema.names)
    if unknown:
        raise InstructRecError(f"mapping for '{spec.key}' names unknown lake columns: {sorted(unknown)}")
    types = {f.name: f.dataType for f in spark_schema(spec).fields}
    cols = []
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
        cols.append((_timestamp(col, unit) if name == "event_ts" else col.cast(types[name])).alias(name))
    return frame.select(*cols)


def read_generic(spark: SparkSession, src: GenericSource) -> tuple[DataFrame, DataFrame, DataFrame | None]:
    items = _map(_read(spark, src, src.items_path), ITEMS, src.items_columns, src.timestamp_unit, src.items_path)
    inter = _map(
        _read(spark, src, src.interactions_path), INTERACTIONS, src.interactions_columns, src.timestamp_unit,
        src.interactions_path,
    )
    if "position" not in src.interactions_columns:
        if "event_ts" not in src.interactions_columns:
            raise InstructRecError("interactions mapping needs 'position' or 'event_ts' to order each user's history")
        order = Window.partitionBy("user_id").orderBy(F.col("event_ts").asc_nulls_first(), F.col("item_id"))
        inter = inter.withColumn("position", (F.row_number().over(order) - 1).cast("long"))
    intents = None
    if src.intents_path:
        intents = _map(_read(spark, src, src.intents_path), INTENTS, src.intents_columns, src.timestamp_unit, src.intents_path)
    return items, inter, intents
