"""The RuleServer's logic as a plain class: loading, the retry backoff, once-only reporting and
the parked calls, with the clock and the timers handed in (so its tests never sleep).

The actor (actors/rule_server.py) is a shell around it: it turns messages into calls, owns the
real timers and the subscribers, and keeps one instance for its whole life.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Protocol

from actors.background import BackgroundLoads
from actors.backoff import Backoff
from actors.messages import ExpireParkedCalls, RetryLoad, SnapshotReply
from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, CheckpointError, read_checkpoint
from recommender.loading import DiskState, LoadError, load_snapshot, observe
from recommender.reporting import LoadReporter
from recommender.snapshot import Snapshot

# The actor's logger: the lines are the RuleServer's, wherever its logic lives.
log = logging.getLogger("actors.rule_server")

# A commit can land between reading the checkpoint and opening the rules it names (and remove
# them): a load that fails while the checkpoint changed is tried again with the new one.
LOAD_ATTEMPTS = 3
# The timers this logic arms, by key (at most one pending per key).
RETRY_TIMER = "retry"
EXPIRY_TIMER = "expire"


class TimerStarter(Protocol):
    """What the logic needs of timers: actors.timers.Timers, or a test's fake."""

    def start(self, key: Hashable, delay: float, message: Any) -> None:
        """Deliver ``message`` back in ``delay`` s, replacing ``key``'s pending timer."""

    def cancel(self, key: Hashable) -> None:
        """Cancel ``key``'s pending timer, if any."""


class RuleState:
    """The snapshot being served, the loading of new ones, and the calls parked before any.

    Not thread-safe: the RuleServer calls it from its own thread only. With ``loads``, every
    load after the first runs through it (at idle priority: actors/background.py). ``timers``
    deliver :class:`RetryLoad` (answer: :meth:`check` with ``retrying``) and
    :class:`ExpireParkedCalls` (answer: :meth:`expire_parked`); ``publish`` is called with every
    snapshot swapped in.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        backoff: Backoff,
        reporter: LoadReporter,
        timers: TimerStarter,
        publish: Callable[[Snapshot], None],
        loads: BackgroundLoads | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._data_dir = Path(data_dir)
        self._backoff = backoff
        self._reporter = reporter
        self._timers = timers
        self._publish = publish
        self._loads = loads
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._parked: list[tuple[float, SnapshotReply]] = []
        self._expiry_at: float | None = None
        # The disk as it was when the last load failed, and the cause already logged.
        self._failed_on: DiskState | None = None
        self._reported: str | None = None

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot being served, or None before the first load."""
        return self._snapshot

    # -- loading ------------------------------------------------------------------------------

    def check(self, *, retrying: bool = False) -> None:
        """Load the rules the checkpoint names if they are not the ones served; ``retrying``:
        the backoff timer's attempt, made even if the disk looks as it did at the failure."""
        disk = observe(self._data_dir)
        if self._failed_on is not None and not retrying:
            if disk == self._failed_on:
                return  # the files that just failed: leave them to the backoff timer
            # Something was written since the failure: try it at once, from a short delay.
            self._backoff.reset()
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            try:
                checkpoint = read_checkpoint(self._data_dir / CHECKPOINT_FILENAME)
            except CheckpointError as exc:
                if disk.checkpoint is None:
                    self._no_checkpoint()
                else:
                    self._load_failed(disk, f"checkpoint unusable: {exc}")
                return
            if self._snapshot is not None and checkpoint == self._snapshot.checkpoint:
                # Only news after a problem (e.g. a garbage checkpoint restored), else silent.
                recovered = (
                    f"the rules on disk are readable again and unchanged ({self._serving()})"
                )
                self._settled(recovered if self._reported is not None else None)
                return
            started = self._clock()
            load = functools.partial(load_snapshot, self._data_dir, checkpoint)
            try:
                # The first load at full speed: nothing is served yet, readiness waits for it.
                if self._snapshot is None or self._loads is None:
                    snapshot = load()
                else:
                    snapshot = self._loads.run(load)
            except LoadError as exc:
                if attempt < LOAD_ATTEMPTS and self._checkpoint_changed_from(checkpoint):
                    disk = observe(self._data_dir)
                    continue
                self._load_failed(disk, str(exc))
                return
            self._swap(snapshot, self._clock() - started)
            return

    def _checkpoint_changed_from(self, checkpoint: Checkpoint) -> bool:
        try:
            return read_checkpoint(self._data_dir / CHECKPOINT_FILENAME) != checkpoint
        except CheckpointError:
            return True

    def _swap(self, snapshot: Snapshot, seconds: float) -> None:
        self._snapshot = snapshot
        self._settled(None)
        log.info(
            "loaded %d rules over %d songs in %.3f s (model_date %s, generated_ns %d)",
            snapshot.header.rule_count,
            snapshot.header.song_count,
            seconds,
            snapshot.model_date,
            snapshot.generated_ns,
        )
        self._reporter.load_succeeded(snapshot)
        parked, self._parked = self._parked, []
        self._timers.cancel(EXPIRY_TIMER)
        self._expiry_at = None
        for _, reply in parked:
            answer(reply, snapshot)
        self._publish(snapshot)

    def _load_failed(self, disk: DiskState, cause: str) -> None:
        self._reporter.load_failed()
        self._failed_on = disk
        delay = self._backoff.next_delay()
        self._timers.start(RETRY_TIMER, delay, RetryLoad())
        if cause != self._reported:
            self._reported = cause
            log.error(
                "rules not loaded: %s; %s; retrying with backoff (next in %.1f s, at most %.0f s "
                "apart) and at once when the files change",
                cause,
                self._serving(),
                delay,
                self._backoff.cap,
            )

    def _no_checkpoint(self) -> None:
        # Nothing to load: not a failure to retry; the watcher tells us when a checkpoint lands.
        if self._snapshot is None:
            self._settled(f"no checkpoint in {self._data_dir} yet: waiting for the miner")
        else:
            news = f"the checkpoint has gone from {self._data_dir}; {self._serving()}"
            self._settled(news, logging.WARNING)

    def _settled(self, news: str | None, level: int = logging.INFO) -> None:
        """Nothing is left to retry; log ``news`` unless it was the last thing logged."""
        self._failed_on = None
        self._backoff.reset()
        self._timers.cancel(RETRY_TIMER)
        if news is not None and news != self._reported:
            log.log(level, "%s", news)
        self._reported = news

    def _serving(self) -> str:
        if self._snapshot is None:
            return "no rules are served yet"
        return f"still serving the rules of {self._snapshot.model_date}"

    # -- parked calls -------------------------------------------------------------------------

    def get_snapshot(self, reply: SnapshotReply, timeout: float) -> None:
        """Answer ``reply`` with the snapshot, or park it until the first load (at most
        ``timeout`` s, then it gets None)."""
        if self._snapshot is not None:
            answer(reply, self._snapshot)
            return
        self._parked.append((self._clock() + timeout, reply))
        self._arm_expiry()

    def expire_parked(self) -> None:
        """Answer None to the parked calls whose wait has run out."""
        now = self._clock()
        due = [reply for deadline, reply in self._parked if deadline <= now]
        self._parked = [(deadline, reply) for deadline, reply in self._parked if deadline > now]
        self._expiry_at = None
        for reply in due:
            answer(reply, None)
        self._arm_expiry()

    def close(self) -> None:
        """Answer every parked call with None: no rules will come any more."""
        parked, self._parked = self._parked, []
        for _, reply in parked:
            answer(reply, None)

    def _arm_expiry(self) -> None:
        """One timer, for the earliest parked deadline (not a thread per parked call)."""
        if not self._parked:
            return
        earliest = min(deadline for deadline, _ in self._parked)
        if self._expiry_at is None or earliest < self._expiry_at:
            self._expiry_at = earliest
            self._timers.start(EXPIRY_TIMER, earliest - self._clock(), ExpireParkedCalls())


def answer(reply: SnapshotReply, snapshot: Snapshot | None) -> None:
    """Call ``reply``; a caller that went away (its event loop closed) is ignored."""
    try:
        reply(snapshot)
    except Exception:
        # Its request is over anyway.
        log.debug("rule server: a parked caller could not be answered", exc_info=True)
