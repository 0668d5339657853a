"""Every lake test runs on both Delta backends: Spark with the Delta jars `make setup` fetched
(spark-delta) and delta-rs. A machine without the jars fails the spark-delta half with the reason."""

import pytest

from instructrec_batch.config import LakeConfig
from instructrec_batch.lake import Lake

BACKENDS = ["delta-rs", "spark-delta"]


@pytest.fixture(params=BACKENDS)
def lake(request, tmp_path, spark) -> Lake:
    lake = Lake(LakeConfig(root=str(tmp_path / "lake"), backend=request.param), spark)
    assert lake.backend == request.param  # which backend ran is part of the test's name and checked
    return lake
