"""The HTTP application on loopback behind a test double of the HttpFrontend actor's gate.

``Gate`` implements ``actors.gate.RulesGate``: the test publishes snapshots (waking any
request parked in ``wait_for_snapshot``) and sets ``draining``; the actors' own tests run the
real gate end to end. ``serve`` runs ``init_app`` on a real 127.0.0.1 port.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from http_api.connections import start_serving
from http_api.settings import Settings
from recommender.snapshot import Snapshot
from tests.helpers.openapi import checked_app


class Gate:
    """A RulesGate the test drives: it publishes snapshots and sets ``draining``."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.snapshot = snapshot
        self.draining = False
        # Calls to wait_for_snapshot: a test sees a request held, or refused before any wait.
        self.waits = 0
        self._published = asyncio.Event()

    def publish(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` current and wake parked waiters, as a push from the rule server."""
        self.snapshot = snapshot
        self._published.set()

    async def wait_for_snapshot(self, timeout: float) -> Snapshot | None:
        """Park until a snapshot is published or ``timeout`` passes."""
        self.waits += 1
        if self.snapshot is None:
            try:
                await asyncio.wait_for(self._published.wait(), timeout)
            except TimeoutError:
                return None
        return self.snapshot


@asynccontextmanager
async def serve(gate: Gate, settings: Settings, port: int = 0) -> AsyncIterator[str]:
    """Run the application on 127.0.0.1 (``port`` 0: a free one) as the HttpFrontend actor
    does (connection cap, timeouts, JSON for malformed requests), every response checked
    against the OpenAPI document; yield its base URL."""
    listener = socket.create_server(("127.0.0.1", port))
    address = listener.getsockname()
    runner = await start_serving(
        checked_app(gate, settings),
        listener,
        dataclasses.replace(settings, shutdown_timeout_seconds=0.1),
    )
    try:
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        await runner.cleanup()
