"""The pipeline tests' small real lake (bundled sample, tiny model), shared with the reliability tests."""

from tests.pipeline.conftest import model_copy, small_lake  # noqa: F401 - fixtures, registered by import
