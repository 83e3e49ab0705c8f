"""RuleServer: owns the snapshot being served, loads new rules, parks calls made before any.

A shell over :class:`actors.rule_state.RuleState`, which holds the logic: this actor turns
messages into its calls, owns its timers and pushes each new snapshot to the subscribers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pykka

from actors.background import BackgroundLoads
from actors.backoff import Backoff
from actors.dispatch import LoggingActor
from actors.messages import (
    CheckRules,
    ExpireParkedCalls,
    GetSnapshot,
    RetryLoad,
    SnapshotChanged,
    Subscribe,
)
from actors.rule_state import RuleState
from actors.timers import Timers
from recommender.reporting import LoadReporter, SilentReporter
from recommender.snapshot import Snapshot


class RuleServer(LoggingActor):
    """Holds the current immutable snapshot; :class:`CheckRules` may replace it.

    Loading runs on this actor's thread, or after the first load on a thread at idle priority
    that it waits for (``loads``: actors/background.py). It cannot freeze the event loop
    because the rules file decodes into a few numpy arrays (a few short GIL-holding steps, one
    per array) and the index is built by numpy passes, never one Python object per rule
    (benchmarks/serve_reload.py measures it).
    """

    label = "rule server"

    def __init__(
        self,
        data_dir: Path,
        backoff: Backoff | None = None,
        *,
        reporter: LoadReporter | None = None,
        loads: BackgroundLoads | None = None,
    ) -> None:
        super().__init__()
        self._subscribers: list[pykka.ActorRef[Any]] = []
        self._timers = Timers(self.actor_ref)
        self._state = RuleState(
            Path(data_dir),
            backoff=backoff or Backoff(first=0.5, cap=30.0),
            reporter=reporter or SilentReporter(),
            timers=self._timers,
            publish=self._publish,
            loads=loads,
        )

    def on_stop(self) -> None:
        """Cancel timers and answer parked calls with None: no rules will come any more."""
        self._timers.cancel_all()
        self._state.close()

    def on_failure(self, *_exc_info: object) -> None:
        """Cancel timers; parked calls are left to the caller's own timeout (a restart loads)."""
        self._timers.cancel_all()

    def handle(self, message: Any) -> Any:
        """Dispatch one message of the protocol."""
        match message:
            case CheckRules():
                self._state.check()
            case RetryLoad():
                self._state.check(retrying=True)
            case GetSnapshot(reply=reply, timeout_seconds=timeout):
                self._state.get_snapshot(reply, timeout)
            case Subscribe(subscriber=subscriber):
                self._subscribe(subscriber)
            case ExpireParkedCalls():
                self._state.expire_parked()
            case _:
                self.unexpected(message)
        return None

    def _subscribe(self, subscriber: pykka.ActorRef[Any]) -> None:
        if subscriber not in self._subscribers:
            self._subscribers.append(subscriber)
        if self._state.snapshot is not None:
            self._push(subscriber, self._state.snapshot)

    def _publish(self, snapshot: Snapshot) -> None:
        for subscriber in list(self._subscribers):
            self._push(subscriber, snapshot)

    def _push(self, subscriber: pykka.ActorRef[Any], snapshot: Snapshot) -> None:
        try:
            subscriber.tell(SnapshotChanged(snapshot))
        except pykka.ActorDeadError:
            # A dead subscriber's replacement subscribes itself when it starts.
            self._subscribers.remove(subscriber)
