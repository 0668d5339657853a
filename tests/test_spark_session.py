"""spark_session: a job runs in the caller's session and leaves it open for the caller's next job."""

from instructrec_batch.config import SparkConfig
from instructrec_batch.spark import spark_session


def test_a_session_passed_in_is_used_and_left_running(spark):
    with spark_session(SparkConfig(), spark) as session:
        assert session is spark
        assert session.range(3).count() == 3
    assert spark.range(5).count() == 5  # not stopped: the demo runs ingest, tune and two nightlies in it


def test_a_session_passed_in_is_left_running_when_the_job_fails(spark):
    try:
        with spark_session(SparkConfig(), spark):
            raise RuntimeError("the job failed")
    except RuntimeError:
        pass
    assert spark.range(2).count() == 2
