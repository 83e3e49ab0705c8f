"""The HttpFrontend actor: the real aiohttp app on its own loop thread, on a loopback socket.

The RuleServer is a test double here (tests/actors/test_supervisor.py runs the real trio), so
each test controls exactly when snapshots and deferred replies arrive.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pykka
import pytest
from aiohttp import web

from actors.frontend import HttpFrontend
from actors.gate import RulesGate
from actors.messages import GetSnapshot, Ping, SnapshotChanged, StartDraining, Subscribe
from actors.supervisor import bind_listener
from http_api.app import init_app, serving
from http_api.settings import Settings
from recommender.snapshot import Snapshot
from tests.helpers.openapi import checked_app
from tests.helpers.rules import FIRST_NS, small_ruleset, snapshot_of

SECOND_NS = FIRST_NS + 1_000_000_000
BODY = {"songs": ["Hey Jude"], "limit": 2}


class SlowRuleServer(pykka.ThreadingActor):
    """Answers GetSnapshot only after ``delay`` s spent on its own thread, like a slow load."""

    def __init__(self, snapshot: Snapshot | None, delay: float) -> None:
        super().__init__()
        self.snapshot, self.delay = snapshot, delay
        self.subscribers: list[pykka.ActorRef[Any]] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Ping):
            return True
        if isinstance(message, Subscribe):
            self.subscribers.append(message.subscriber)
        if isinstance(message, GetSnapshot):
            time.sleep(self.delay)
            message.reply(self.snapshot)
        return None


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = bind_listener("127.0.0.1", 0)
    yield sock
    sock.close()


def start_frontend(
    listener: socket.socket,
    rule_server: pykka.ActorRef[Any],
    app_factory: Any = checked_app,
    **settings: Any,
) -> tuple[pykka.ActorRef[Any], str]:
    config = Settings(host="127.0.0.1", port=0, **settings)
    serve = serving(config, app_factory)
    ref = HttpFrontend.start(listener.dup(), rule_server, serve, config.shutdown_timeout_seconds)
    ref.ask(Ping(), timeout=10)
    return ref, f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_a_bridged_wait_for_the_first_rules_never_blocks_the_loop(
    listener: socket.socket,
) -> None:
    snapshot = snapshot_of(small_ruleset())
    rule_server = SlowRuleServer.start(snapshot, delay=0.8)
    _ref, url = start_frontend(listener, rule_server, rules_wait_seconds=5)
    async with aiohttp.ClientSession() as session:
        held = asyncio.create_task(session.post(f"{url}/api/recommend", json=BODY))
        await asyncio.sleep(0.2)  # the recommend is now parked at the slow RuleServer
        timings = []
        for _ in range(5):
            started = time.monotonic()
            async with session.get(f"{url}/healthz") as response:
                assert response.status == 200
            timings.append(time.monotonic() - started)
        assert max(timings) < 0.1, timings
        async with await held as response:
            assert response.status == 200
            assert (await response.json())["songs"] == ["Yesterday", "Imagine"]


async def test_no_rules_within_the_wait_budget_is_503_with_retry_after(
    listener: socket.socket,
) -> None:
    rule_server = SlowRuleServer.start(None, delay=0.0)
    _ref, url = start_frontend(listener, rule_server, rules_wait_seconds=0.3)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/api/recommend", json=BODY) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert "error" in await response.json()
        async with session.get(f"{url}/readyz") as response:
            assert response.status == 503


async def test_pushed_snapshots_are_served_from_the_next_request_on(
    listener: socket.socket,
) -> None:
    rule_server = SlowRuleServer.start(None, delay=0.0)
    ref, url = start_frontend(listener, rule_server)
    first, second = small_ruleset(), small_ruleset(SECOND_NS, rules=[((0,), 1, 85, 90)])
    async with aiohttp.ClientSession() as session:
        for ruleset, songs in ((first, ["Yesterday"]), (second, ["Let It Be"])):
            ref.tell(SnapshotChanged(snapshot_of(ruleset)))
            await asyncio.sleep(0.05)
            async with session.post(f"{url}/api/recommend", json=BODY | {"limit": 1}) as response:
                body = await response.json()
                assert body["songs"] == songs
                assert body["model_date"] == snapshot_of(ruleset).model_date
            async with session.get(f"{url}/readyz") as response:
                assert response.status == 200


async def test_draining_is_not_ready_and_closes_connections_but_still_serves(
    listener: socket.socket,
) -> None:
    rule_server = SlowRuleServer.start(None, delay=0.0)
    ref, url = start_frontend(listener, rule_server)
    ref.tell(SnapshotChanged(snapshot_of(small_ruleset())))
    ref.tell(StartDraining())
    await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/readyz") as response:
            assert response.status == 503
            assert response.headers["Connection"] == "close"
        async with session.post(f"{url}/api/recommend", json=BODY) as response:
            assert response.status == 200
            assert response.headers["Connection"] == "close"


def with_slow_route(gate: RulesGate, settings: Settings) -> web.Application:
    """The real app plus a route that takes 0.5 s, to have a request in flight at will."""

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.json_response({"slow": "done"})

    app = init_app(gate, settings)
    app.router.add_get("/slow", slow)
    return app


async def test_stopping_lets_in_flight_requests_finish_then_stops_listening(
    listener: socket.socket,
) -> None:
    rule_server = SlowRuleServer.start(None, delay=0.0)
    ref, url = start_frontend(
        listener, rule_server, app_factory=with_slow_route, shutdown_timeout_seconds=5
    )
    listener.close()  # as the supervisor does before stopping the frontend
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(session.get(f"{url}/slow"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await asyncio.to_thread(ref.stop, block=True, timeout=15)
        assert time.monotonic() - started < 3
        async with await in_flight as response:
            assert response.status == 200
            assert await response.json() == {"slow": "done"}
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{url}/healthz")
    assert not [t for t in threading.enumerate() if t.name == "http-frontend-loop"]


async def test_a_successor_serves_the_same_socket_and_the_connections_queued_meanwhile(
    listener: socket.socket,
) -> None:
    rule_server = SlowRuleServer.start(None, delay=0.0)
    first, url = start_frontend(listener, rule_server)
    first.stop(block=True, timeout=15)
    async with aiohttp.ClientSession() as session:
        # Nobody accepts now, but the socket still listens: the request waits in the backlog.
        queued = asyncio.create_task(session.get(f"{url}/healthz"))
        await asyncio.sleep(0.2)
        assert not queued.done()
        await asyncio.to_thread(start_frontend, listener, rule_server)
        async with await queued as response:
            assert response.status == 200
