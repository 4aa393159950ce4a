"""Unit tests for sim.clock: virtual time is instant, exact and thread-safe."""

from __future__ import annotations

import math
import threading
import time

import pytest

from sim.clock import Clock, RealClock, VirtualClock


def test_virtual_clock_starts_where_told() -> None:
    assert VirtualClock().now() == 0.0
    assert VirtualClock(start=1234.5).now() == 1234.5


def test_virtual_sleep_is_exact_and_instant() -> None:
    clock = VirtualClock(start=10.0)
    wall = time.perf_counter()
    clock.sleep(6 * 3600.0)  # a whole protocol's worth
    clock.sleep(0.25)
    clock.advance(0.5)
    assert time.perf_counter() - wall < 0.05
    assert clock.now() == 10.0 + 6 * 3600.0 + 0.75


def test_virtual_sleep_zero_is_allowed() -> None:
    clock = VirtualClock(start=3.0)
    clock.sleep(0)
    assert clock.now() == 3.0


@pytest.mark.parametrize("bad", [-1e-9, -1.0, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("method", ["sleep", "advance"])
def test_virtual_rejects_bad_durations_and_keeps_time(bad: float, method: str) -> None:
    clock = VirtualClock(start=5.0)
    with pytest.raises(ValueError):
        getattr(clock, method)(bad)
    assert clock.now() == 5.0


def test_virtual_rejects_non_finite_start() -> None:
    with pytest.raises(ValueError):
        VirtualClock(start=math.nan)


def test_virtual_clock_is_thread_safe() -> None:
    clock = VirtualClock()
    n_threads, n_steps = 6, 5000
    barrier = threading.Barrier(n_threads)

    def worker() -> None:
        barrier.wait()
        for _ in range(n_steps):
            clock.advance(1.0)  # integers: the sum is exact if no update is lost
            clock.now()

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert clock.now() == n_threads * n_steps


def test_flags_and_protocol() -> None:
    assert VirtualClock.is_virtual is True
    assert RealClock.is_virtual is False
    assert isinstance(VirtualClock(), Clock)
    assert isinstance(RealClock(), Clock)


def test_real_clock_follows_wall_time() -> None:
    clock = RealClock()
    assert abs(clock.now() - time.time()) < 1.0
    start = time.monotonic()
    clock.sleep(0.02)
    assert time.monotonic() - start >= 0.015


@pytest.mark.parametrize("bad", [-0.5, math.nan])
def test_real_clock_rejects_bad_durations(bad: float) -> None:
    with pytest.raises(ValueError):
        RealClock().sleep(bad)
