"""Table contract, validation and the Delta adapter."""

from .adapter import Lake
from .schemas import INPUT_TABLES, SPECS, TableSpec, spark_schema
from .validation import ValidatedInputs, validate_inputs

__all__ = ["Lake", "INPUT_TABLES", "SPECS", "TableSpec", "spark_schema", "ValidatedInputs", "validate_inputs"]
