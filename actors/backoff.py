"""Capped exponential backoff for retries (a failed load, an observer that will not start)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``first``, ``first·factor``, ... up to ``cap``; :meth:`reset` after a success."""

    first: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    _next: float = field(init=False)

    def __post_init__(self) -> None:
        self._next = self.first

    def next_delay(self) -> float:
        """The delay to wait before the next attempt; each call lengthens the following one."""
        delay = self._next
        self._next = min(self._next * self.factor, self.cap)
        return delay

    def reset(self) -> None:
        """Start again from ``first``."""
        self._next = self.first
