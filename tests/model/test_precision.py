"""``dtype: auto`` is measured: the faster dtype on this host wins, an explicit one always wins, and the
cached measurement is per CPU model, torch version, thread count and model shapes."""

from __future__ import annotations

import json

import torch

from instructrec_batch.model import device
from instructrec_batch.model.device import choose_precision, pick_faster, precision_key


def fake_timer(fp32_ms: float, bf16_ms: float):
    calls = []

    def timer(dtype: str, hidden: int, intermediate: int) -> float:
        calls.append((dtype, hidden, intermediate))
        return {"fp32": fp32_ms, "bf16": bf16_ms}[dtype]

    timer.calls = calls
    return timer


def test_the_faster_dtype_is_picked_only_when_clearly_faster():
    assert pick_faster(10.0, 5.0, min_speedup=1.2) == "bf16"
    assert pick_faster(10.0, 9.0, min_speedup=1.2) == "fp32", "1.11x is not clearly faster"
    assert pick_faster(10.0, 15.0, min_speedup=1.2) == "fp32"
    fast = choose_precision("auto", "cpu", 576, 1536, None, 1.2, timer=fake_timer(12.0, 6.5))
    slow = choose_precision("auto", "cpu", 576, 1536, None, 1.2, timer=fake_timer(6.5, 12.0))
    assert (fast.dtype, fast.how, fast.fp32_ms, fast.bf16_ms) == ("bf16", "measured", 12.0, 6.5)
    assert slow.dtype == "fp32"


def test_an_explicit_dtype_wins_without_measuring():
    timer = fake_timer(12.0, 1.0)
    assert choose_precision("fp32", "cpu", 576, 1536, None, 1.2, timer=timer).dtype == "fp32"
    assert choose_precision("bf16", "cpu", 576, 1536, None, 1.2, timer=fake_timer(1.0, 12.0)).dtype == "bf16"
    assert timer.calls == []


def test_the_measurement_is_cached_per_thread_count(tmp_path):
    cache = tmp_path / "precision.json"
    threads = torch.get_num_threads()
    first = fake_timer(12.0, 6.0)
    assert choose_precision("auto", "cpu", 64, 128, cache, 1.2, timer=first).how == "measured"
    again = fake_timer(1.0, 99.0)  # would say fp32 if it were asked
    hit = choose_precision("auto", "cpu", 64, 128, cache, 1.2, timer=again)
    assert (hit.dtype, hit.how, again.calls) == ("bf16", "cached", [])
    assert precision_key("cpu", "2.13", 1, 64, 128) != precision_key("cpu", "2.13", 2, 64, 128)
    try:
        torch.set_num_threads(threads + 1)
        other = choose_precision("auto", "cpu", 64, 128, cache, 1.2, timer=fake_timer(5.0, 10.0))
        assert (other.dtype, other.how) == ("fp32", "measured"), "another thread count is measured anew"
    finally:
        torch.set_num_threads(threads)
    assert len(json.loads(cache.read_text())) == 2


def test_a_damaged_cache_is_measured_again(tmp_path):
    cache = tmp_path / "precision.json"
    cache.write_text("{not json")
    assert choose_precision("auto", "cpu", 64, 128, cache, 1.2, timer=fake_timer(12.0, 6.0)).how == "measured"


def test_the_real_timer_runs_the_models_shapes():
    assert device.matmul_ms("fp32", 64, 128, tokens=16, repeats=1) > 0


def test_a_burst_of_load_on_one_side_does_not_decide():
    """fp32 is timed while a neighbour runs (the first round), then quietly: the quiet figures win."""
    times = iter([24.0, 4.1, 2.6, 4.0, 2.7, 4.2])
    choice = choose_precision("auto", "cpu", 576, 1536, None, 1.2, timer=lambda *args: next(times))
    assert (choice.dtype, choice.fp32_ms, choice.bf16_ms) == ("fp32", 2.6, 4.0)
