"""Capped exponential backoff."""

from __future__ import annotations

from actors.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset_starts_over() -> None:
    backoff = Backoff(first=0.5, cap=30.0)
    assert [backoff.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    backoff.reset()
    assert backoff.next_delay() == 0.5
