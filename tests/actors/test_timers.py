"""Delayed messages to a real actor."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pykka

from actors.timers import Timers


class Inbox(pykka.ThreadingActor):
    def __init__(self, received: queue.Queue[tuple[float, Any]]) -> None:
        super().__init__()
        self.received = received

    def on_receive(self, message: Any) -> Any:
        self.received.put((time.monotonic(), message))


def test_a_timer_delivers_once_after_its_delay_and_a_restart_replaces_it() -> None:
    received: queue.Queue[tuple[float, Any]] = queue.Queue()
    timers = Timers(Inbox.start(received))
    started = time.monotonic()
    timers.start("a", 0.1, "first")
    timers.start("a", 0.2, "second")  # replaces "first"
    timers.start("b", 0.05, "other")
    assert timers.pending("a")
    at, message = received.get(timeout=5)
    assert message == "other"
    at, message = received.get(timeout=5)
    assert message == "second" and at - started >= 0.2
    time.sleep(0.2)
    assert received.empty()
    assert not timers.pending("a")


def test_cancelled_timers_never_deliver_and_leave_no_thread() -> None:
    received: queue.Queue[tuple[float, Any]] = queue.Queue()
    timers = Timers(Inbox.start(received))
    timers.start("a", 0.1, "a")
    timers.start("b", 0.1, "b")
    timers.cancel("a")
    timers.cancel_all()
    time.sleep(0.3)
    assert received.empty()
    # A cancelled timer's thread wakes and exits; give a busy machine a moment.
    deadline = time.monotonic() + 5
    while any(t.name in ("timer-a", "timer-b") for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_timer_for_a_stopped_actor_is_dropped_quietly() -> None:
    ref = Inbox.start(queue.Queue())
    timers = Timers(ref)
    timers.start("a", 0.05, "late")
    ref.stop()
    time.sleep(0.2)
    assert not timers.pending("a")
