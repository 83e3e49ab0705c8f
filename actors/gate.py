"""The rules as the HTTP handlers see them: :class:`RulesGate`, and :class:`LoopGate`, the one
implementation the HttpFrontend actor runs on its event loop.

Handlers only read ``gate.snapshot`` (a plain attribute swap, no lock, no pykka future) and,
before the first rules exist, ``await gate.wait_for_snapshot(...)``, which is bridged to the
RuleServer with an asyncio future completed through ``loop.call_soon_threadsafe``: nothing on
the loop ever waits for a pykka future (docs/actors.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

import pykka

from actors.messages import GetSnapshot
from recommender.snapshot import Snapshot


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


class LoopGate:
    """The :class:`RulesGate` the handlers see; it lives on the event loop and only there."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rule_server: pykka.ActorRef[Any]) -> None:
        self._loop = loop
        self._rule_server = rule_server
        self._snapshot: Snapshot | None = None
        self._draining = False
        self._waiters: set[asyncio.Future[Snapshot | None]] = set()

    @property
    def snapshot(self) -> Snapshot | None:
        """The newest snapshot pushed by the RuleServer, or None before the first."""
        return self._snapshot

    @property
    def draining(self) -> bool:
        """True from SIGTERM on."""
        return self._draining

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` from now on and wake every request waiting for a first one."""
        self._snapshot = snapshot
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(snapshot)

    def set_rule_server(self, rule_server: pykka.ActorRef[Any]) -> None:
        """Send later GetSnapshot calls to this RuleServer (the supervisor restarted it)."""
        self._rule_server = rule_server

    def start_draining(self) -> None:
        """Report not-ready and close connections from now on."""
        self._draining = True

    async def wait_for_snapshot(self, timeout: float) -> Snapshot | None:
        """The snapshot, waiting up to ``timeout`` s for the first one (a deferred reply)."""
        if self._snapshot is not None or timeout <= 0:
            return self._snapshot
        waiter: asyncio.Future[Snapshot | None] = self._loop.create_future()
        self._waiters.add(waiter)
        loop = self._loop

        def settle(snapshot: Snapshot | None) -> None:
            if not waiter.done():
                waiter.set_result(snapshot)

        def reply(snapshot: Snapshot | None) -> None:
            # Runs on the RuleServer's thread: hand over, never touch the future there.
            loop.call_soon_threadsafe(settle, snapshot)

        try:
            # A dead RuleServer's replacement pushes the first snapshot it loads, waking us.
            with contextlib.suppress(pykka.ActorDeadError):
                self._rule_server.tell(GetSnapshot(reply=reply, timeout_seconds=timeout))
            try:
                return await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                return self._snapshot
        finally:
            self._waiters.discard(waiter)
