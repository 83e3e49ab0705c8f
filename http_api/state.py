"""What the HTTP handlers see of the actor system: the current snapshot and a way to wait for one.

The HttpFrontend actor implements :class:`RulesGate` on the event loop; handlers only read
``gate.snapshot`` (a plain attribute swap, no lock, no pykka future) and, before the first
rules exist, ``await gate.wait_for_snapshot(...)``, which is bridged to the RuleServer with an
asyncio future completed through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from http_api.validation import MAX_LIMIT
from mining.checkpoint import Checkpoint
from mining.rulesfile import RulesHeader
from mining.version import __version__

if TYPE_CHECKING:
    from http_api.recommender import Recommender


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One loaded rule set: immutable, shared by every request until the next swap."""

    checkpoint: Checkpoint
    header: RulesHeader
    recommender: Recommender

    @property
    def model_date(self) -> str:
        """The checkpoint's generation time as served in ``model_date``."""
        return self.checkpoint.model_date

    @property
    def generated_ns(self) -> int:
        """The checkpoint's generation time in ns since the epoch."""
        return self.checkpoint.generated_ns

    def answer_tail(self, from_rules: int, unknown: Sequence[str]) -> bytes:
        """The end of a recommendation from this rule set, after its song list: ``version``,
        ``model_date``, ``from_rules`` and ``unknown``.

        Without unknown songs (the usual case) it is one of a few strings formatted once per
        rule set, not once per request.
        """
        if not unknown and from_rules < len(self._known_tails):
            return self._known_tails[from_rules]
        return self._format_tail(from_rules, unknown)

    @functools.cached_property
    def _known_tails(self) -> tuple[bytes, ...]:
        """The tails without unknown songs, by ``from_rules`` up to the largest ``limit``."""
        return tuple(self._format_tail(from_rules, ()) for from_rules in range(MAX_LIMIT + 1))

    def _format_tail(self, from_rules: int, unknown: Sequence[str]) -> bytes:
        version, model_date = json.dumps(__version__), json.dumps(self.model_date)
        return (
            f', "version": {version}, "model_date": {model_date}, '
            f'"from_rules": {from_rules}, "unknown": {json.dumps(list(unknown))}}}'
        ).encode()


class RulesGate(Protocol):
    """The handlers' view of the rule server, valid on the event loop thread only."""

    @property
    def snapshot(self) -> Snapshot | None:
        """The newest loaded snapshot, or None before the first load."""

    @property
    def draining(self) -> bool:
        """True from SIGTERM on: /readyz answers 503 and responses carry Connection: close."""

    async def wait_for_snapshot(self, timeout: float) -> Snapshot | None:
        """Wait (deferred reply from the rule server) up to ``timeout`` s for the first snapshot."""
