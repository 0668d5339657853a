"""Session-wide engines for the whole suite: one local Spark, one local Ray, one tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from instructrec_batch.config import LakeConfig, SparkConfig, load_config
from instructrec_batch.lake import Lake

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def spark():
    from instructrec_batch.spark import get_spark

    # 3g: one JVM serves the whole suite, and after ~180 tests a broadcast on a 6-user lake once ran out
    # of a 2g heap (a fresh-clone `make test`); a JVM that ran only the nightly stages holds ~0.7 GB after GC.
    session = get_spark(
        SparkConfig(master="local[2]", driver_memory="3g", conf={"spark.sql.shuffle.partitions": "2"})
    )
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path, spark) -> Lake:
    return Lake(LakeConfig(root=str(tmp_path / "lake"), backend="delta-rs"), spark)


@pytest.fixture
def cfg(tmp_path):
    """The embedded default config with every path inside the test's own folder."""
    return load_config(
        overrides=[
            f"lake.root={tmp_path / 'lake'}",
            f"model.registry_dir={tmp_path / 'models'}",
            f"evaluation.report_dir={tmp_path / 'reports'}",
            # No retriever is fitted on a test's lake; the merged default has its own tests
            # (tests/pipeline/test_nightly.py, tests/retrieval/test_sequential.py).
            "retrieval.method=cooccurrence",
        ]
    )


@pytest.fixture(scope="session")
def ray_local():
    import ray

    if not ray.is_initialized():
        # Logical CPUs above the real 2: actors that hold a slot for their lifetime (scoring, Ray Train
        # controllers) must never starve the short tasks (writes, reads) that finish a run.
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """The real bundled SmolLM2 (converted once into the user cache)."""
    from instructrec_batch.model.base import base_model_dir as resolve

    return resolve(load_config().model)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, base_model_dir) -> Path:
    """A tiny randomly initialised Llama with the real tokenizer: fast enough for unit tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "amazon-games-2018" / "sequences.tsv").exists():
        pytest.skip("../shared/data is not present (full-data test)")
    return SHARED_DATA


os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
