"""The fixed schedule: no drift, no pile-up, skipped ticks counted."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from client.schedule import Tick, next_tick


def test_a_quick_request_waits_for_the_next_tick() -> None:
    assert next_tick(start=100.0, interval=1.0, previous=0, now=100.02) == Tick(1, 101.0, 0)


def test_ticks_stay_on_the_grid_after_many_late_wakeups() -> None:
    # Each request starts 30 ms late and takes 50 ms: a loop adding the interval
    # to "now" would drift 80 ms per tick, the schedule does not move.
    index = 0
    for _ in range(1000):
        tick = next_tick(start=0.0, interval=0.1, previous=index, now=index * 0.1 + 0.08)
        assert tick.skipped == 0
        index = tick.index
    assert index == 1000
    assert tick.due == 100.0


def test_an_overrun_shorter_than_an_interval_sends_the_next_tick_at_once() -> None:
    # A 1 s timeout with a 1 s interval: the next tick is due, send it late.
    assert next_tick(start=0.0, interval=1.0, previous=4, now=5.001) == Tick(5, 5.0, 0)


def test_a_long_overrun_skips_the_missed_ticks_instead_of_bursting() -> None:
    assert next_tick(start=0.0, interval=0.1, previous=3, now=1.05) == Tick(10, 1.0, 6)


@given(
    start=st.floats(0, 1e6),
    interval=st.floats(0.001, 100),
    previous=st.integers(0, 10**6),
    busy=st.floats(0, 1000),
)
def test_next_tick_is_on_the_grid_and_at_most_one_interval_late(
    start: float, interval: float, previous: int, busy: float
) -> None:
    now = start + previous * interval + busy
    tick = next_tick(start, interval, previous, now)
    assert tick.index > previous
    assert tick.skipped == tick.index - previous - 1
    assert math.isclose(tick.due, start + tick.index * interval)
    # Never a burst: the tick sent is due no earlier than one interval ago...
    assert tick.due > now - interval - 1e-6 * max(1.0, now)
    # ...and nothing due is skipped unless a later due tick replaces it.
    if tick.skipped:
        assert tick.due <= now + 1e-6 * max(1.0, now)
