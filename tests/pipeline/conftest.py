"""A small real lake (bundled sample, a few dozen users) and a config that scores with the tiny model."""

from __future__ import annotations

import shutil

import pytest

from instructrec_batch.config import load_config
from instructrec_batch.ingest import job as ingest_job
from instructrec_batch.lake import Lake


def small_config(tmp_path, model_dir, users: int = 30, extra: list[str] | None = None):
    return load_config(
        overrides=[
            f"lake.root={tmp_path / 'lake'}",
            f"model.registry_dir={tmp_path / 'models'}",
            "model.version=base",
            "model.base.kind=hf_dir",
            f"model.base.path={model_dir}",
            f"ingest.max_users={users}",
            "ingest.sources=[games_sample, reviews_sample]",
            "scoring.block_rows=16",
            "scoring.top_k=5",
            "nightly.gate.max_fallback_share=0.9",
            "retrieval.method=cooccurrence",  # nothing fitted here; test_nightly.py covers merged
            *(extra or []),
        ]
    )


@pytest.fixture
def model_copy(tmp_path, tiny_model_dir):
    """A private copy of the tiny model, so a test may break it and mend it."""
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


@pytest.fixture
def small_lake(tmp_path, spark, model_copy):
    cfg = small_config(tmp_path, model_copy)
    lake = Lake(cfg.lake, spark)
    ingest_job.run(spark, lake, cfg)
    return cfg, lake
