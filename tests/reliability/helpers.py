"""Fault injection for the reliability tests: find our own Ray actor, run and kill the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
_ENTRY = Path(sys.executable).parent / "instructrec-batch"
CLI = [str(_ENTRY)] if _ENTRY.exists() else [sys.executable, "-m", "instructrec_batch.cli"]
# What a user may see on stderr for an error they can act on: never a traceback from Python, Java or py4j.
STACK_MARKERS = ("Traceback", "py4j", "java.", "org.apache", "at org.", "Exception in thread")


def config_args(cfg) -> list[str]:
    """`--set` flags reproducing a test config on the command line (same values, so the same hashes)."""
    dump = cfg.model_dump(mode="json")
    args = []
    for section in ("lake", "model", "ingest", "scoring", "instructions", "nightly", "retrieval", "preferences"):
        for key, value in _flatten(dump[section], section):
            args += ["--set", f"{key}={_yaml(value)}"]
    return args


def _flatten(node, prefix):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}.{key}")
        else:
            yield f"{prefix}.{key}", value


def _yaml(value) -> str:
    import json

    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value)  # a quoted YAML scalar: '2026' stays a string, paths keep their characters
    return json.dumps(value)


def cli_env() -> dict:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
        }
    )
    env.pop("RAY_ADDRESS", None)  # the CLI starts its own local Ray, as on a scheduler's machine
    return env


def start_cli(args: list[str], log_path: Path) -> subprocess.Popen:
    """The real command in its own process group (so a kill takes its Spark JVM and Ray with it)."""
    log = open(log_path, "wb")
    return subprocess.Popen(
        [*CLI, *args], cwd=REPO, env=cli_env(), stdout=log, stderr=subprocess.PIPE, start_new_session=True
    )


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout, start_new_session=True
    )


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the command and everything it started (JVM, Ray): a machine-level crash."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def our_actor_processes(title: str = "MapWorker(MapBatches(ScoringActor))") -> list[psutil.Process]:
    """Ray actor processes started by this test process's own Ray (never another user's)."""
    found = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if title in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


class ActorKiller(threading.Thread):
    """SIGKILLs our scoring actor once it is mid-run: at least one block of output has reached the
    staging folder and the actor is still alive (so other blocks are pending or in flight)."""

    def __init__(self, staging_root: Path, timeout: float = 600):
        super().__init__(daemon=True)
        self.staging_root = staging_root
        self.timeout = timeout
        self.killed: list[tuple[int, str, int]] = []  # (pid, process title, staged files at the kill)
        self._done = threading.Event()

    def staged_files(self) -> int:
        return sum(1 for _ in self.staging_root.glob("score-*/*.parquet")) if self.staging_root.exists() else 0

    def run(self) -> None:
        deadline = time.time() + self.timeout
        while not self._done.is_set() and time.time() < deadline:
            staged = self.staged_files()
            actors = our_actor_processes()
            if staged >= 1 and actors:
                proc = actors[0]
                title = " ".join(proc.cmdline()).strip()
                try:
                    proc.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    continue
                self.killed.append((proc.pid, title, staged))
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)
