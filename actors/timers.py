"""Delayed one-way messages to an actor: pykka has no timers, so each one is a daemon thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable
from typing import Any

import pykka


class Timers:
    """Tell one actor a message after a delay; at most one pending timer per key.

    Starting a key that is pending replaces it. A cancelled timer can still deliver if it was
    already firing, so every timer message must be harmless when it arrives late or twice.
    """

    def __init__(self, target: pykka.ActorRef[Any]) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Timer] = {}

    def start(self, key: Hashable, delay: float, message: Any) -> None:
        """Tell ``message`` to the actor in ``delay`` s, replacing ``key``'s pending timer."""
        timer = threading.Timer(max(delay, 0.0), self._fire, args=(key, message))
        # Daemon: a timer left over must never keep the process alive at exit.
        timer.daemon = True
        timer.name = f"timer-{key}"
        with self._lock:
            previous = self._pending.get(key)
            self._pending[key] = timer
        if previous is not None:
            previous.cancel()
        timer.start()

    def pending(self, key: Hashable) -> bool:
        """True while ``key``'s timer has neither fired nor been cancelled."""
        with self._lock:
            return key in self._pending

    def cancel(self, key: Hashable) -> None:
        """Cancel ``key``'s pending timer, if any."""
        with self._lock:
            timer = self._pending.pop(key, None)
        if timer is not None:
            timer.cancel()

    def cancel_all(self) -> None:
        """Cancel every pending timer (call from ``on_stop`` and ``on_failure``)."""
        with self._lock:
            timers = list(self._pending.values())
            self._pending.clear()
        for timer in timers:
            timer.cancel()

    def _fire(self, key: Hashable, message: Any) -> None:
        with self._lock:
            if self._pending.get(key) is not threading.current_thread():
                return  # replaced or cancelled while this thread was starting
            del self._pending[key]
        # The actor may have stopped after arming the timer: then nobody is left to tell.
        with contextlib.suppress(pykka.ActorDeadError):
            self._target.tell(message)
