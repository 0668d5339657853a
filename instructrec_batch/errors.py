"""Errors a user can act on. The CLI prints their message (no traceback) and exits non-zero."""


class InstructRecError(Exception):
    """Base class: the message alone must say what is wrong and where."""


class SchemaError(InstructRecError):
    """An input table does not match the lake contract (missing column, wrong type)."""


class GateError(InstructRecError):
    """A data-quality gate failed; the run stopped before writing its output."""


class StageOrderError(InstructRecError):
    """A stage was asked to run before the stage it reads from succeeded for that run date."""


class ModelNotFoundError(InstructRecError):
    """The model registry has no such name/version, or the base model cannot be found offline."""


class ConcurrentRunError(InstructRecError):
    """Another run committed to the same table partition first."""
