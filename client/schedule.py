"""The fixed request schedule of continuous mode: tick k is due at start + k * interval."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tick:
    """The next request: its index on the schedule, when it is due, and ticks given up."""

    index: int
    due: float
    skipped: int


def next_tick(start: float, interval: float, previous: int, now: float) -> Tick:
    """The tick to send after tick `previous` finished at `now` (monotonic seconds).

    Normally tick previous+1, due in the future. When a request outlasted the
    interval the schedule does not drift and does not pile up: the latest tick
    already due is sent at once (late, its row carries the real send time) and
    the ticks before it are skipped.
    """
    latest_due = math.floor((now - start) / interval)
    index = max(previous + 1, latest_due)
    return Tick(index=index, due=start + index * interval, skipped=index - previous - 1)
