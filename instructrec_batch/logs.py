"""Readable, structured logs: `time level logger | message key=value ...`, or one JSON object per line.

Pass fields with `log.info("stage finished", extra={"fields": {"stage": "score", "users": 2000}})`, or
use `event(log, "stage finished", stage="score", users=2000)`.
"""

from __future__ import annotations

import json
import logging
import sys
import time


class _Formatter(logging.Formatter):
    def __init__(self, structured: bool):
        super().__init__()
        self.structured = structured

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {}) or {}
        if self.structured:
            return json.dumps(
                {"ts": record.created, "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage(), **fields},
                default=str,
            )
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        kv = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{stamp} {record.levelname:<5} {record.getMessage()}{'  ' + kv if kv else ''}"


def _not_a_py4j_retry(record: logging.LogRecord) -> bool:
    """py4j reports a command it is about to retry on a fresh connection through the root logger at
    INFO ("Exception while sending command."), so the library filter below cannot name it. It happens
    when a Spark session outlives the thread that opened a connection (the demo's shared session) and
    the retry succeeds; a failure that stays one is raised and logged by the caller."""
    return not (record.name == "root" and record.module == "java_gateway" and record.levelno < logging.WARNING)


def setup_logging(level: str = "INFO", structured: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(structured))
    handler.addFilter(_not_a_py4j_retry)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that are chatty at INFO: keep their warnings, drop their progress chatter.
    for noisy in ("py4j", "urllib3", "filelock", "transformers", "ray", "ray.data", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(logger: logging.Logger, message: str, **fields) -> None:
    logger.info(message, extra={"fields": fields})
