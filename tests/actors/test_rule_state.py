"""The RuleServer's logic without the actor: a fake clock and fake timers, real files.

Nothing here sleeps: time moves only when a test advances the clock, and a timer fires only
when the clock passes its due time, delivering its message as the actor would.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from actors.background import BackgroundLoads
from actors.backoff import Backoff
from actors.messages import ExpireParkedCalls, RetryLoad
from actors.rule_state import EXPIRY_TIMER, RETRY_TIMER, RuleState
from mining.atomicfile import atomic_write_bytes
from mining.checkpoint import CHECKPOINT_FILENAME, write_checkpoint
from mining.rulesfile import RULES_FILENAME, encode_rules
from recommender.snapshot import Snapshot
from tests.helpers.rules import FIRST_NS, checkpoint_of, small_ruleset, write_model

SECOND_NS = FIRST_NS + 1_000_000_000
T = TypeVar("T")
LOGGER = "actors.rule_server"


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTimers:
    """Timers on the fake clock: pending messages by key, with their due time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending: dict[Hashable, tuple[float, Any]] = {}

    def start(self, key: Hashable, delay: float, message: Any) -> None:
        self.pending[key] = (self.clock() + max(delay, 0.0), message)

    def cancel(self, key: Hashable) -> None:
        self.pending.pop(key, None)

    def delay(self, key: Hashable) -> float:
        return self.pending[key][0] - self.clock()


class Reporter:
    """Counts what the state reports, as the metrics would."""

    def __init__(self) -> None:
        self.loaded: list[Snapshot] = []
        self.failures = 0

    def load_succeeded(self, snapshot: Snapshot) -> None:
        self.loaded.append(snapshot)

    def load_failed(self) -> None:
        self.failures += 1


class Harness:
    """A RuleState over ``data_dir`` with everything it talks to recorded."""

    def __init__(
        self,
        data_dir: Path,
        backoff: Backoff | None = None,
        loads: BackgroundLoads | None = None,
    ) -> None:
        self.clock = Clock()
        self.timers = FakeTimers(self.clock)
        self.reporter = Reporter()
        self.published: list[Snapshot] = []
        self.replies: list[tuple[str, Snapshot | None, float]] = []
        self.state = RuleState(
            data_dir,
            backoff=backoff or Backoff(first=0.5, cap=30.0),
            reporter=self.reporter,
            timers=self.timers,
            publish=self.published.append,
            loads=loads,
            clock=self.clock,
        )

    def park(self, name: str, timeout: float) -> None:
        """A GetSnapshot whose reply records its name, its answer and when it came."""

        def reply(snapshot: Snapshot | None) -> None:
            self.replies.append((name, snapshot, self.clock()))

        self.state.get_snapshot(reply, timeout)

    def advance(self, seconds: float) -> None:
        """Move the clock, delivering every timer that falls due on the way, in order."""
        target = self.clock.now + seconds
        while self.timers.pending:
            key, (due, message) = min(self.timers.pending.items(), key=lambda kv: kv[1][0])
            if due > target:
                break
            del self.timers.pending[key]
            self.clock.now = max(self.clock.now, due)
            if isinstance(message, RetryLoad):
                self.state.check(retrying=True)
            elif isinstance(message, ExpireParkedCalls):
                self.state.expire_parked()
        self.clock.now = target


def truncate_rules(data_dir: Path, generated_ns: int = SECOND_NS) -> None:
    """Commit a checkpoint naming rules of ``generated_ns`` whose file is cut in half."""
    data = encode_rules(small_ruleset(generated_ns))
    atomic_write_bytes(data_dir / RULES_FILENAME, data[: len(data) // 2])
    write_checkpoint(data_dir / CHECKPOINT_FILENAME, checkpoint_of(small_ruleset(generated_ns)))


def test_a_parked_call_gets_none_exactly_when_its_wait_runs_out(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.state.check()
    h.park("only", timeout=5.0)
    assert h.timers.delay(EXPIRY_TIMER) == 5.0
    h.advance(4.999)
    assert h.replies == []
    h.advance(0.001)
    assert h.replies == [("only", None, 1005.0)]
    assert EXPIRY_TIMER not in h.timers.pending


def test_each_parked_call_gets_its_own_wait_from_one_timer(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.park("long", timeout=1.5)
    h.park("short", timeout=0.2)
    # One timer, for the earliest deadline, re-armed for the next one when it fires.
    assert h.timers.delay(EXPIRY_TIMER) == pytest.approx(0.2)
    h.advance(0.2)
    assert h.replies == [("short", None, pytest.approx(1000.2))]  # type: ignore[comparison-overlap]
    assert h.timers.delay(EXPIRY_TIMER) == pytest.approx(1.3)
    h.advance(2.0)
    assert h.replies[1] == ("long", None, pytest.approx(1001.5))  # type: ignore[comparison-overlap]


def test_the_first_load_answers_parked_calls_and_disarms_their_timer(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.park("early", timeout=30)
    h.advance(10)
    write_model(tmp_path, small_ruleset())
    h.state.check()
    [(name, snapshot, _)] = h.replies
    assert name == "early" and snapshot is not None and snapshot.generated_ns == FIRST_NS
    assert EXPIRY_TIMER not in h.timers.pending
    assert h.published == [snapshot] and h.reporter.loaded == [snapshot]
    h.park("late", timeout=30)
    assert h.replies[-1][:2] == ("late", snapshot)


class CountingLoads(BackgroundLoads):
    """BackgroundLoads that records the thread and CPU policy each load ran under."""

    def __init__(self) -> None:
        super().__init__("idle")
        self.ran: list[tuple[int, int]] = []

    def run(self, load: Callable[[], T]) -> T:
        def recorded() -> T:
            self.ran.append((threading.get_ident(), os.sched_getscheduler(0)))
            return load()

        return super().run(recorded)


def test_every_load_after_the_first_runs_in_the_background_and_its_failure_is_kept(
    tmp_path: Path,
) -> None:
    loads = CountingLoads()
    h = Harness(tmp_path, loads=loads)
    write_model(tmp_path, small_ruleset())
    h.state.check()
    # The first load on the caller's thread: nothing is served yet, readiness waits for it.
    assert loads.ran == []
    assert h.state.snapshot is not None
    write_model(tmp_path, small_ruleset(SECOND_NS))
    h.state.check()
    assert [policy for _, policy in loads.ran] == [os.SCHED_IDLE]
    assert loads.ran[0][0] != threading.get_ident()
    assert h.state.snapshot.generated_ns == SECOND_NS
    # A failure on the loader thread is the same failure: old rules kept, a retry armed.
    truncate_rules(tmp_path, SECOND_NS + 1)
    h.state.check()
    assert len(loads.ran) == 2
    assert h.state.snapshot.generated_ns == SECOND_NS
    assert (h.reporter.failures, RETRY_TIMER in h.timers.pending) == (1, True)


def test_a_failing_load_is_retried_with_capped_backoff_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    truncate_rules(tmp_path)
    h = Harness(tmp_path, Backoff(first=0.05, cap=0.2))
    h.state.check()
    delays = [h.timers.delay(RETRY_TIMER)]
    for _ in range(5):
        h.advance(delays[-1])
        delays.append(h.timers.delay(RETRY_TIMER))
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.2, 0.2, 0.2])
    assert h.reporter.failures == 6
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "not valid CBOR" in errors[0]
    assert "no rules are served yet" in errors[0]


def test_unchanged_broken_files_wait_for_the_backoff_and_a_new_write_is_tried_at_once(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, Backoff(first=4.0, cap=60.0))
    write_model(tmp_path, small_ruleset())
    h.state.check()
    truncate_rules(tmp_path)
    h.state.check()
    h.advance(4.0)  # the retry: still broken, so the next one is further away
    assert h.reporter.failures == 2 and h.timers.delay(RETRY_TIMER) == 8.0
    for _ in range(5):
        h.state.check()  # the watcher's checks: the same files are not read again
    assert h.reporter.failures == 2
    write_model(tmp_path, small_ruleset(SECOND_NS))
    h.state.check()
    assert h.state.snapshot is not None and h.state.snapshot.generated_ns == SECOND_NS
    assert RETRY_TIMER not in h.timers.pending
    # The backoff starts again from its first delay after a success.
    truncate_rules(tmp_path, SECOND_NS + 1_000_000_000)
    h.state.check()
    assert h.timers.delay(RETRY_TIMER) == 4.0


def test_waiting_for_the_miner_and_recovering_are_each_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = Harness(tmp_path)
    for _ in range(3):
        h.state.check()
    write_model(tmp_path, small_ruleset())
    h.state.check()
    atomic_write_bytes(tmp_path / CHECKPOINT_FILENAME, b"\x00\xffgarbage")
    h.state.check()
    write_checkpoint(tmp_path / CHECKPOINT_FILENAME, checkpoint_of(small_ruleset()))
    for _ in range(3):
        h.state.check()
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "waiting for the miner" in m] == [
        f"no checkpoint in {tmp_path} yet: waiting for the miner"
    ]
    assert len([m for m in messages if m.startswith("loaded 3 rules over 5 songs in ")]) == 1
    assert len([m for m in messages if "checkpoint unusable" in m]) == 1
    assert messages[-1] == (
        "the rules on disk are readable again and unchanged "
        "(still serving the rules of 2023-11-14 22:13:20.123456)"
    )
    assert len(h.reporter.loaded) == 1 and h.reporter.failures == 1


def test_closing_answers_every_parked_call_with_none(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.park("a", timeout=30)
    h.park("b", timeout=60)
    h.state.close()
    assert [(name, snapshot) for name, snapshot, _ in h.replies] == [("a", None), ("b", None)]
    h.advance(100)
    assert len(h.replies) == 2


def test_a_reply_that_raises_is_ignored(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def broken(_snapshot: Snapshot | None) -> None:
        raise RuntimeError("Event loop is closed")

    h.state.get_snapshot(broken, 1.0)
    h.park("next", timeout=2.0)
    h.advance(3.0)
    assert [name for name, _, _ in h.replies] == ["next"]
