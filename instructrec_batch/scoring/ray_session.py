"""Start (or join) Ray for one job and stop it afterwards.

Local by default (``ray.address: null``); ``ray.address: auto`` or ``ray://...`` joins a cluster, where the
same pipeline runs unchanged. A Ray that is already running in this process (a test fixture, a notebook)
is reused and left running: whoever started it stops it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..config import RayConfig

log = logging.getLogger(__name__)

# Environment every worker needs: never reach for the model hub; keep tokenizers from forking threads
# inside Ray's worker processes; and opt in to Ray's future behaviour of leaving CUDA_VISIBLE_DEVICES
# alone for actors that asked for zero GPUs (silences its FutureWarning on every actor start).
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
}


@contextmanager
def ray_session(cfg: RayConfig, env_vars: dict[str, str] | None = None) -> Iterator[object]:
    import ray

    if ray.is_initialized():
        yield ray
        return
    for key, value in WORKER_ENV.items():  # the driver reads some of these too (the warning is raised here)
        os.environ.setdefault(key, value)
    kwargs: dict = {
        "include_dashboard": cfg.include_dashboard,
        "runtime_env": {"env_vars": {**WORKER_ENV, **(env_vars or {})}},
        "configure_logging": False,
    }
    if cfg.address is None:  # resources are only ours to size on a local Ray
        kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_memory_mb:
            kwargs["object_store_memory"] = cfg.object_store_memory_mb * 1024 * 1024
    else:
        kwargs["address"] = cfg.address
    ray.init(**kwargs)
    log.info("ray started: %s", ray.cluster_resources())
    try:
        yield ray
    finally:
        ray.shutdown()
