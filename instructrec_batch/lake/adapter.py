"""Delta I/O behind one interface, with two backends (README, "Delta backends").

- ``spark-delta``: native ``format("delta")`` when the Delta jars are on the JVM classpath (clusters).
- ``delta-rs``: the ``deltalake`` package, for machines without the jars (laptops, CI, the demo).
  Spark reads a snapshot by asking delta-rs for the file list and reading those Parquet files natively;
  Spark writes go to a per-write staging folder of Parquet that is streamed into ``write_deltalake``
  (never collected on the driver) with a ``predicate`` overwrite, so a run date's partition is
  replaced in one atomic commit.

This is the only module that knows which backend is in use.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from ..config import LakeConfig
from ..errors import ConcurrentRunError, InstructRecError
from .schemas import SPECS, TableSpec, spark_schema
from .validation import conform_arrow_schema, conform_spark_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"


def delta_jars_available(spark: "SparkSession") -> bool:
    """True when the JVM can load Delta's Spark classes (a cluster image or --packages put them there)."""
    try:
        spark._jvm.java.lang.Class.forName(_DELTA_EXTENSION)  # noqa: SLF001 - py4j is the only way to ask
        return True
    except Exception:
        return False


def process_owner() -> str:
    """``host:pid`` of this process: recorded with every staging folder and running stage, so that a
    later run can prove the writer is dead (same host, no such process) and clean up after it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when ``owner`` is a process of this host that no longer exists; another host's
    process, or an unknown owner, is never presumed dead."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _partition_predicate(partition: dict[str, str]) -> str:
    for value in partition.values():
        if "'" in value:
            raise InstructRecError(f"partition value {value!r} may not contain a quote")
    return " AND ".join(f"{col} = '{val}'" for col, val in partition.items())


class Lake:
    """Tables by their config key (``items``, ``prompts``...); Spark frames in, Spark or Arrow out."""

    def __init__(self, cfg: LakeConfig, spark: "SparkSession | None" = None):
        self.cfg = cfg
        self.root = Path(cfg.root).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise InstructRecError(f"lake.root {self.root} is a file, not a folder")
        self.spark = spark
        self.backend = self._choose_backend(cfg.backend, spark)

    @staticmethod
    def _choose_backend(requested: str, spark: "SparkSession | None") -> str:
        if requested == "delta-rs" or spark is None:
            backend = "delta-rs"
        elif requested == "spark-delta":
            if not delta_jars_available(spark):
                raise InstructRecError(
                    "lake.backend=spark-delta but the Delta jars are not on the Spark classpath "
                    "(io.delta:delta-spark_2.13 and delta-storage); use lake.backend=delta-rs or auto"
                )
            backend = "spark-delta"
        else:
            backend = "spark-delta" if delta_jars_available(spark) else "delta-rs"
        if requested == "auto" and spark is not None:
            log.info("lake backend: %s (auto)", backend)
        return backend

    # ── names, existence, versions ──────────────────────────────────────────────────────────
    def spec(self, key: str) -> TableSpec:
        return SPECS[key]

    def path(self, key: str) -> str:
        return str(self.root / getattr(self.cfg.tables, key))

    def exists(self, key: str) -> bool:
        return DeltaTable.is_deltatable(self.path(key))

    def version(self, key: str) -> int | None:
        return DeltaTable(self.path(key)).version() if self.exists(key) else None

    def versions(self, keys: Iterable[str]) -> dict[str, int | None]:
        return {k: self.version(k) for k in keys}

    def delta_table(self, key: str) -> DeltaTable:
        if not self.exists(key):
            raise InstructRecError(f"table {key!r} does not exist at {self.path(key)} (run the stage that writes it first)")
        return DeltaTable(self.path(key))

    # ── reads ───────────────────────────────────────────────────────────────────────────────
    def read(self, key: str, partition: dict[str, str] | None = None) -> "DataFrame":
        """A Spark frame of the table's current snapshot (optionally one partition), checked against
        the contract: missing required column or a wrong type raises SchemaError naming both."""
        spark = self._need_spark()
        spec = self.spec(key)
        if not self.exists(key):
            if key in ("intents",):  # optional input: absent means "no intents"
                return spark.createDataFrame([], spark_schema(spec))
            raise InstructRecError(f"table {key!r} does not exist at {self.path(key)}")
        if self.backend == "spark-delta":
            frame = spark.read.format("delta").load(self.path(key))
            if partition:
                frame = frame.where(_partition_predicate(partition))
            return conform_spark_frame(frame, spec)
        dt = DeltaTable(self.path(key))
        found = pa.schema(dt.schema().to_arrow())
        read_schema = conform_arrow_schema(found, spec)  # raises SchemaError on drift
        files = self._files(dt, partition)
        if not files:
            frame = spark.createDataFrame([], spark_schema(_as_spec(spec, read_schema)))
        else:
            frame = (
                spark.read.schema(spark_schema(_as_spec(spec, read_schema)))
                .option("basePath", self.path(key))
                .parquet(*files)
            )
            if partition:  # pruning already picked the files; keep the filter for safety on odd layouts
                frame = frame.where(_partition_predicate(partition))
        return conform_spark_frame(frame, spec)

    def read_arrow(self, key: str, partition: dict[str, str] | None = None, columns: list[str] | None = None) -> pa.Table:
        """Arrow table via delta-rs, no JVM (Ray actors, SQL, tests)."""
        dt = self.delta_table(key)
        dataset = dt.to_pyarrow_dataset()
        expr = None
        for col, val in (partition or {}).items():
            cond = pads.field(col) == val
            expr = cond if expr is None else expr & cond
        return dataset.to_table(filter=expr, columns=columns)

    def files(self, key: str, partition: dict[str, str] | None = None) -> list[str]:
        """The Parquet files of the table's current snapshot (optionally one partition), for engines that
        read files themselves (Ray Data). Sound because no writer here leaves deletion vectors: a
        partition replace removes whole files."""
        return self._files(self.delta_table(key), partition)

    @staticmethod
    def _files(dt: DeltaTable, partition: dict[str, str] | None) -> list[str]:
        if partition:
            return dt.file_uris(file_pruning_predicate=_partition_predicate(partition))
        return dt.file_uris()

    # ── writes ──────────────────────────────────────────────────────────────────────────────
    def overwrite(self, frame: "DataFrame", key: str) -> int:
        """Replace the whole table (input snapshots). Returns the new Delta version."""
        return self._write(frame, key, mode="overwrite", partition=None)

    def replace_partition(self, frame: "DataFrame", key: str, partition: dict[str, str]) -> int:
        """Atomically replace one partition (e.g. ``{"run_date": D}``): a rerun never duplicates,
        other partitions are untouched, and a failure before the commit leaves the old data."""
        return self._write(frame, key, mode="overwrite", partition=partition)

    def write_arrow(
        self,
        data: pa.Table | pa.RecordBatchReader,
        key: str,
        mode: str = "append",
        partition: dict[str, str] | None = None,
    ) -> int:
        """Arrow data in (Ray results, run records): one Delta commit."""
        spec = self.spec(key)
        if isinstance(data, pa.Table):
            data = data.select(spec.schema.names).cast(spec.schema)
        return self._commit(data, key, mode, partition)

    def append_rows(self, key: str, rows: list[dict]) -> int:
        return self.write_arrow(pa.Table.from_pylist(rows, schema=self.spec(key).schema), key, mode="append")

    def _write(self, frame: "DataFrame", key: str, mode: str, partition: dict[str, str] | None) -> int:
        spec = self.spec(key)
        frame = conform_spark_frame(frame, spec)
        if self.backend == "spark-delta":  # Delta itself refuses rows outside replaceWhere
            if partition and not self.exists(key):
                # Delta checks replaceWhere only against an existing table: create it empty first, so
                # that the very first partition write is checked too (as the delta-rs path checks it).
                empty = frame.sparkSession.createDataFrame([], frame.schema).write.format("delta")
                (empty.partitionBy(*spec.partition_by) if spec.partition_by else empty).save(self.path(key))
            writer = frame.write.format("delta").mode(mode)
            if spec.partition_by:
                writer = writer.partitionBy(*spec.partition_by)
            if partition:
                # A column added to the contract (e.g. prompts' fusion features) joins the table.
                writer = writer.option("replaceWhere", _partition_predicate(partition)).option("mergeSchema", "true")
            try:
                writer.save(self.path(key))
            except Exception as exc:  # py4j/Spark errors: named here, not as a JVM stack trace
                raise _spark_delta_error(exc, key, partition) from None
            return self.version(key)
        staging = self.staging_dir(key)
        try:
            frame.write.mode("overwrite").parquet(str(staging))
            dataset = pads.dataset(str(staging), format="parquet", schema=spec.schema)
            if partition:
                # Checked on the staged files (a column scan), not on the frame: a Spark count
                # before the write would evaluate the frame's whole lineage a second time.
                _check_partition_values(dataset, partition)
            reader = dataset.scanner(batch_size=65536).to_reader()
            return self._commit(reader, key, mode, partition)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _commit(self, data, key: str, mode: str, partition: dict[str, str] | None) -> int:
        spec = self.spec(key)
        path = self.path(key)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A predicate overwrite needs an existing table; the very first write simply creates it.
        predicate = _partition_predicate(partition) if partition and self.exists(key) else None
        try:
            write_deltalake(
                path,
                data,
                mode=mode,
                partition_by=list(spec.partition_by) or None,
                predicate=predicate,
                # A partition replace may bring a column the contract gained since older partitions
                # were written: merge it into the table schema (older rows read it as null).
                schema_mode="merge" if predicate else None,
            )
        except CommitFailedError as exc:
            raise ConcurrentRunError(
                f"another run committed to {key!r} ({partition or 'whole table'}) at the same time; "
                f"this run's write was not applied: {exc}"
            ) from None
        return DeltaTable(path).version()

    def staging_root(self) -> Path:
        return Path(self.cfg.staging_dir).expanduser() if self.cfg.staging_dir else self.root / "_staging"

    def staging_dir(self, prefix: str) -> Path:
        """A new per-write staging folder, named ``<prefix>@<host:pid>@<random>`` after its writer."""
        return self.staging_root() / f"{prefix}@{process_owner()}@{uuid.uuid4().hex[:12]}"

    def remove_dead_staging(self) -> list[Path]:
        """Remove staging folders whose writer process is provably dead (killed mid-write); return them."""
        removed = []
        root = self.staging_root()
        for folder in sorted(root.glob("*@*@*")) if root.exists() else []:
            owner = folder.name.split("@")[1]
            if owner_is_dead(owner):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        if removed:
            log.warning("removed %d staging folders left by killed runs: %s", len(removed), [p.name for p in removed])
        return removed


    def _need_spark(self) -> "SparkSession":
        if self.spark is None:
            raise InstructRecError("this lake operation needs a Spark session")
        return self.spark


def _spark_delta_error(exc: Exception, key: str, partition: dict[str, str] | None) -> Exception:
    """Delta's own errors, as the delta-rs path words them; anything else unchanged."""
    text = str(exc)
    first = text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
    if "DELTA_REPLACE_WHERE_MISMATCH" in text or "does not conform to partial table overwrite" in text:
        return InstructRecError(f"rows outside partition {partition} were given to replace_partition of {key!r}")
    if "DELTA_CONCURRENT" in text or "Concurrent" in type(exc).__name__ or "ConcurrentAppendException" in text:
        return ConcurrentRunError(
            f"another run committed to {key!r} ({partition or 'whole table'}) at the same time; "
            f"this run's write was not applied: {first}")
    return exc


def _check_partition_values(dataset: pads.Dataset, partition: dict[str, str]) -> None:
    outside = None
    for col, val in partition.items():
        cond = pads.field(col) != val
        outside = cond if outside is None else (outside | cond)
    if dataset.count_rows(filter=outside):
        raise InstructRecError(f"rows outside partition {partition} were given to replace_partition")


def _as_spec(spec: TableSpec, schema: pa.Schema) -> TableSpec:
    return TableSpec(spec.key, schema, spec.required, spec.partition_by, spec.optional)
