"""The actors' protocol: requests are imperative, events are past tense, all frozen dataclasses.

Who sends what:

- supervisor → every actor: :class:`Ping` (asked; answered once ``on_start`` has run).
- RulesWatcher → RuleServer: :class:`CheckRules` (idempotent: "look at the disk", never
  "reload now").
- HttpFrontend → RuleServer: :class:`Subscribe`, and :class:`GetSnapshot`, whose reply comes
  back through the callback it carries (a deferred reply: the RuleServer may park the call).
- RuleServer → subscribers: :class:`SnapshotChanged`.
- supervisor → HttpFrontend and RulesWatcher: :class:`RuleServerRestarted`; → HttpFrontend:
  :class:`StartDraining`.
- The remaining messages are ones an actor's own timers or watchdog threads send to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from recommender.snapshot import Snapshot

SnapshotReply = Callable[[Snapshot | None], None]


@dataclass(frozen=True)
class Ping:
    """Answer True: proves the actor has finished ``on_start`` and handles messages."""


@dataclass(frozen=True)
class CheckRules:
    """Read the checkpoint; load the rules if it names another rule set than the one served."""


@dataclass(frozen=True)
class GetSnapshot:
    """Call ``reply`` with the current snapshot, or park the call until one exists.

    A parked call is answered with the first snapshot loaded, or with None once
    ``timeout_seconds`` have passed. ``reply`` runs on the RuleServer's thread, so it must
    only hand the result over (e.g. ``loop.call_soon_threadsafe``), never block.
    """

    reply: SnapshotReply
    timeout_seconds: float


@dataclass(frozen=True)
class Subscribe:
    """Send ``subscriber`` a :class:`SnapshotChanged` now (if loaded) and after every swap."""

    subscriber: pykka.ActorRef[Any]


@dataclass(frozen=True, eq=False)
class SnapshotChanged:
    """The RuleServer swapped in ``snapshot``; serve it from now on."""

    snapshot: Snapshot


@dataclass(frozen=True)
class RuleServerRestarted:
    """The supervisor replaced a dead RuleServer with ``rule_server``; talk to that one now."""

    rule_server: pykka.ActorRef[Any]


@dataclass(frozen=True)
class StartDraining:
    """SIGTERM arrived: report not-ready and close connections, but keep serving."""


@dataclass(frozen=True)
class RetryLoad:
    """The RuleServer's backoff timer: try the failed load again even if the disk looks the same."""


@dataclass(frozen=True)
class ExpireParkedCalls:
    """The RuleServer's timer: answer None to parked calls whose wait has run out."""


@dataclass(frozen=True)
class RulesFilesChanged:
    """watchdog reported an event naming the rules file or the checkpoint."""


@dataclass(frozen=True)
class WatchedDirectoryVanished:
    """watchdog reported the watched directory itself deleted or moved away."""


@dataclass(frozen=True)
class DebounceElapsed:
    """The RulesWatcher's debounce window closed: tell the RuleServer to check."""


@dataclass(frozen=True)
class Tick:
    """The RulesWatcher's periodic timer: check the rules (NFS) and the observer's health."""
