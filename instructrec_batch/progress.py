"""Progress a person can read: done / total, rate and time left, for the long loops (scoring users,
tuning steps, the evaluate job's model passes).

On a terminal it is a tqdm bar (tqdm: well kept, already installed with transformers). In a log file
(a scheduler's stdout) a bar is unreadable, so the same figures go out as one log line every
``interval_s`` seconds, plus one at the end:

    12:04:31 INFO  score: 1,204/5,000 users (24%), 1.52 users/s, 41m36s left
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Counts units of work towards ``total``. ``deadline_s``: a time budget (tuning) that may end the
    loop before ``total``; the time left is then the smaller of the two. ``bar``: None decides by
    whether stderr is a terminal; ``clock`` is injectable for tests. ``heartbeat``: in a log, also
    write the line every ``interval_s`` when no unit finished meanwhile: the score job's units arrive
    a block of users at a time, minutes apart on a CPU, and a log silent for minutes reads as a hang."""

    def __init__(self, label: str, total: int, unit: str, interval_s: float = 30.0, deadline_s: float | None = None,
                 bar: bool | None = None, logger: logging.Logger = log, clock: Callable[[], float] = time.monotonic,
                 heartbeat: bool = False):
        self.label, self.total, self.unit, self.interval_s = label, total, unit, interval_s
        self.logger, self.clock = logger, clock
        self.started = self.last_report = clock()
        self.deadline = None if deadline_s is None else self.started + deadline_s
        self.done = 0
        use_bar = sys.stderr.isatty() if bar is None else bar
        self.bar = None
        if use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=f" {unit}", dynamic_ncols=True, leave=True)
        self._stopped = threading.Event()
        if heartbeat and self.bar is None:
            threading.Thread(target=self._beat, daemon=True, name=f"progress: {label}").start()

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval_s):
            if self.clock() - self.last_report >= self.interval_s:
                self.report()

    def extend_deadline(self, seconds: float) -> None:
        """Time that does not count against the budget (tuning's validation pauses it)."""
        if self.deadline is not None:
            self.deadline += seconds

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.clock() - self.last_report >= self.interval_s:
            self.report()

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        text = f"{self.label}: {self.done:,}/{self.total:,} {self.unit}{share}, {rate:.2f} {self.unit}/s"
        if not self.done:
            return f"{self.label}: 0/{self.total:,} {self.unit}, {duration(elapsed)} in (the first {self.unit} still running)"
        left = self.seconds_left(rate)
        return text + (f", {duration(left)} left" if left is not None else "")

    def seconds_left(self, rate: float) -> float | None:
        candidates = []
        if rate > 0 and self.total:
            candidates.append((self.total - self.done) / rate)
        if self.deadline is not None:
            candidates.append(self.deadline - self.clock())
        return max(0.0, min(candidates)) if candidates else None

    def report(self) -> None:
        self.last_report = self.clock()
        self.logger.info(self.line())

    def close(self) -> None:
        self._stopped.set()
        if self.bar is not None:
            self.bar.close()
        else:
            elapsed = self.clock() - self.started
            rate = self.done / elapsed if elapsed > 0 else 0.0
            self.logger.info(f"{self.label}: {self.done:,} {self.unit} in {duration(elapsed)} ({rate:.2f} {self.unit}/s)")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
