"""The progress line a person reads in a scheduler's log: done/total, rate and time left."""

from __future__ import annotations

import logging

from instructrec_batch.progress import Progress, duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_give_rate_and_time_left_every_interval(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="instructrec_batch.progress"):
        with Progress("score 2026-12-01", 1000, "users", interval_s=30, bar=False, clock=clock) as progress:
            clock.now = 10
            progress.update(20)  # before the interval: silent
            assert not caplog.records
            clock.now = 40
            progress.update(60)  # 80 users in 40 s: 2 users/s, 920 left: 7m40s
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "score 2026-12-01: 80/1,000 users (8%), 2.00 users/s, 7m40s left"
    assert lines[-1] == "score 2026-12-01: 80 users in 40s (2.00 users/s)"


def test_a_time_budget_ends_the_estimate_when_it_comes_first(caplog):
    clock = Clock()
    progress = Progress("tune", 130, "steps", interval_s=0, deadline_s=300, bar=False, clock=clock)
    with caplog.at_level(logging.INFO, logger="instructrec_batch.progress"):
        clock.now = 100
        progress.update(10)  # 0.1 steps/s: 1,200 s for the rest, but the budget ends in 200 s
    assert caplog.records[-1].getMessage().endswith("3m20s left")


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (5, 65, 3700)] == ["5s", "1m05s", "1h01m"]


def test_a_heartbeat_keeps_a_log_alive_while_a_long_block_runs_and_stops_at_close(caplog):
    import time

    with caplog.at_level(logging.INFO, logger="instructrec_batch.progress"):
        with Progress("score 2026-12-01", 10, "users", interval_s=0.05, bar=False, heartbeat=True):
            time.sleep(0.3)  # no user finishes: the line still comes, saying so
        beats = [r.getMessage() for r in caplog.records]
        time.sleep(0.2)
    assert any(line.startswith("score 2026-12-01: 0/10 users, ") and "still running" in line for line in beats)
    assert len(caplog.records) == len(beats)  # nothing after close
