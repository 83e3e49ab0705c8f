"""RuleServer: owns the snapshot being served, loads new rules, parks calls made before any."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pykka

from actors.backoff import Backoff
from actors.loading import DiskState, LoadError, load_snapshot, observe
from actors.messages import (
    CheckRules,
    ExpireParkedCalls,
    GetSnapshot,
    Ping,
    RetryLoad,
    SnapshotChanged,
    SnapshotReply,
    Subscribe,
)
from actors.timers import Timers
from http_api import metrics
from http_api.state import Snapshot
from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, CheckpointError, read_checkpoint

log = logging.getLogger(__name__)

# A commit can land between reading the checkpoint and opening the rules it names (and remove
# them): a load that fails while the checkpoint changed is tried again with the new one.
LOAD_ATTEMPTS = 3


class RuleServer(pykka.ThreadingActor):
    """Holds the current immutable snapshot; :class:`CheckRules` may replace it.

    Loading runs on this actor's thread. It cannot freeze the event loop because the rules file
    decodes into a few numpy arrays (one ~10 ms GIL-holding step for 300k rules) and the index
    is built by numpy passes, never one Python object per rule.
    """

    def __init__(self, data_dir: Path, backoff: Backoff | None = None) -> None:
        super().__init__()
        self._data_dir = Path(data_dir)
        self._backoff = backoff or Backoff(first=0.5, cap=30.0)
        self._snapshot: Snapshot | None = None
        self._parked: list[tuple[float, SnapshotReply]] = []
        self._expiry_at: float | None = None
        self._subscribers: list[pykka.ActorRef[Any]] = []
        # The disk as it was when the last load failed, and the cause already logged.
        self._failed_on: DiskState | None = None
        self._reported: str | None = None
        self._timers = Timers(self.actor_ref)

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message; an error is logged and the last good snapshot kept."""
        # A one-way message whose handler raises kills a pykka actor without a word, and this
        # one holds the rules: log, keep going.
        try:
            return self._handle(message)
        except Exception:
            log.exception("rule server: handling %s failed", type(message).__name__)
            return None

    def on_stop(self) -> None:
        """Cancel timers and answer parked calls with None: no rules will come any more."""
        self._timers.cancel_all()
        parked, self._parked = self._parked, []
        for _, reply in parked:
            self._answer(reply, None)

    def on_failure(self, *_exc_info: object) -> None:
        """Cancel timers; parked calls are left to the caller's own timeout (a restart loads)."""
        self._timers.cancel_all()

    def _handle(self, message: Any) -> Any:
        match message:
            case Ping():
                return True
            case CheckRules():
                self._check(retrying=False)
            case RetryLoad():
                self._check(retrying=True)
            case GetSnapshot(reply=reply, timeout_seconds=timeout):
                self._get_snapshot(reply, timeout)
            case Subscribe(subscriber=subscriber):
                self._subscribe(subscriber)
            case ExpireParkedCalls():
                self._expire_parked()
            case _:
                log.warning("rule server: unexpected message %r", message)
        return None

    # -- loading ------------------------------------------------------------------------------

    def _check(self, retrying: bool) -> None:
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
            started = time.perf_counter()
            try:
                snapshot = load_snapshot(self._data_dir, checkpoint)
            except LoadError as exc:
                if attempt < LOAD_ATTEMPTS and self._checkpoint_changed_from(checkpoint):
                    disk = observe(self._data_dir)
                    continue
                self._load_failed(disk, str(exc))
                return
            self._swap(snapshot, time.perf_counter() - started)
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
        metrics.record_reload_succeeded(snapshot)
        parked, self._parked = self._parked, []
        self._timers.cancel("expire")
        self._expiry_at = None
        for _, reply in parked:
            self._answer(reply, snapshot)
        for subscriber in list(self._subscribers):
            self._push(subscriber, snapshot)

    def _load_failed(self, disk: DiskState, cause: str) -> None:
        metrics.record_reload_failed()
        self._failed_on = disk
        delay = self._backoff.next_delay()
        self._timers.start("retry", delay, RetryLoad())
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
        self._timers.cancel("retry")
        if news is not None and news != self._reported:
            log.log(level, "%s", news)
        self._reported = news

    def _serving(self) -> str:
        if self._snapshot is None:
            return "no rules are served yet"
        return f"still serving the rules of {self._snapshot.model_date}"

    # -- callers and subscribers --------------------------------------------------------------

    def _get_snapshot(self, reply: SnapshotReply, timeout: float) -> None:
        if self._snapshot is not None:
            self._answer(reply, self._snapshot)
            return
        self._parked.append((time.monotonic() + timeout, reply))
        self._arm_expiry()

    def _expire_parked(self) -> None:
        now = time.monotonic()
        due = [reply for deadline, reply in self._parked if deadline <= now]
        self._parked = [(deadline, reply) for deadline, reply in self._parked if deadline > now]
        self._expiry_at = None
        for reply in due:
            self._answer(reply, None)
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        """One timer, for the earliest parked deadline (not a thread per parked call)."""
        if not self._parked:
            return
        earliest = min(deadline for deadline, _ in self._parked)
        if self._expiry_at is None or earliest < self._expiry_at:
            self._expiry_at = earliest
            self._timers.start("expire", earliest - time.monotonic(), ExpireParkedCalls())

    def _answer(self, reply: SnapshotReply, snapshot: Snapshot | None) -> None:
        try:
            reply(snapshot)
        except Exception:
            # The caller went away (its event loop closed): its request is over anyway.
            log.debug("rule server: a parked caller could not be answered", exc_info=True)

    def _subscribe(self, subscriber: pykka.ActorRef[Any]) -> None:
        if subscriber not in self._subscribers:
            self._subscribers.append(subscriber)
        if self._snapshot is not None:
            self._push(subscriber, self._snapshot)

    def _push(self, subscriber: pykka.ActorRef[Any], snapshot: Snapshot) -> None:
        try:
            subscriber.tell(SnapshotChanged(snapshot))
        except pykka.ActorDeadError:
            # A dead subscriber's replacement subscribes itself when it starts.
            self._subscribers.remove(subscriber)
