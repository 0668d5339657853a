"""The job log keeps what a person needs and drops library chatter."""

import logging

from instructrec_batch.logs import setup_logging


def test_py4j_retries_on_the_root_logger_are_dropped_and_everything_else_kept(capsys):
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    setup_logging("INFO")
    try:
        def java_gateway_like(level, msg):  # py4j calls logging.info(...) from py4j/java_gateway.py
            record = logging.getLogger().makeRecord("root", level, "/x/py4j/java_gateway.py", 1056, msg, (), None)
            logging.getLogger().handle(record)

        java_gateway_like(logging.INFO, "Exception while sending command.")
        java_gateway_like(logging.ERROR, "the gateway is gone")
        logging.getLogger("instructrec_batch.test").info("stage finished")
        err = capsys.readouterr().err
        assert "Exception while sending command" not in err
        assert "the gateway is gone" in err and "stage finished" in err
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
