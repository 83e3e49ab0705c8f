"""The supervisor running the real trio in-process, on a loopback port, over a temporary DATA_DIR.

Actors are crashed the way pykka actors die in production: an exception escaping a one-way
message (here a proxy call to a method that does not exist), which stops the actor silently.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pykka
import pytest
from aiohttp import web
from pykka.messages import ProxyCall

from actors import (
    HttpFrontend,
    RuleServer,
    RulesWatcher,
    Supervisor,
    bind_listener,
)
from actors.gate import RulesGate
from actors.messages import Ping
from http_api.app import AppFactory, serving
from http_api.settings import Settings
from mining.checkpoint import format_model_date
from tests.helpers.load import generate_load
from tests.helpers.openapi import checked_app
from tests.helpers.rules import FIRST_NS, small_ruleset, write_model

NS = [FIRST_NS + i * 1_000_000_000 for i in range(4)]


@dataclass
class Running:
    supervisor: Supervisor
    url: str
    thread: threading.Thread
    status: list[int]

    def stop(self) -> int:
        self.supervisor.request_stop("test over")
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        return self.status[0]


def supervisor_for(settings: Settings, app_factory: AppFactory, **options: Any) -> Supervisor:
    """A Supervisor wired as ``python -m http_api`` wires it, over ``app_factory``'s app."""
    listener = bind_listener("127.0.0.1", 0)
    return Supervisor(settings.for_actors(), listener, serving(settings, app_factory), **options)


def run_supervisor(data_dir: Path, **options: Any) -> Running:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=data_dir,
        drain_seconds=0,
        checkpoint_poll_seconds=0.5,
        rules_wait_seconds=5,
    )
    supervisor = supervisor_for(settings, checked_app, **options)
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(supervisor.run()), name="supervisor")
    thread.start()
    host, port = supervisor.address
    return Running(supervisor, f"http://{host}:{port}", thread, status)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    write_model(tmp_path, small_ruleset(NS[0]))
    server = run_supervisor(tmp_path)
    yield server
    if server.thread.is_alive():
        assert server.stop() == 0


def the_one(actor_class: type[pykka.Actor], timeout: float = 10.0) -> pykka.ActorRef[Any]:
    """The live actor of that class, once there is exactly one."""
    deadline = time.monotonic() + timeout
    while True:
        refs = [r for r in pykka.ActorRegistry.get_by_class(actor_class) if r.is_alive()]
        if len(refs) == 1:
            return refs[0]
        assert time.monotonic() < deadline, f"no single live {actor_class.__name__}"
        time.sleep(0.02)


def crash(actor_class: type[pykka.Actor]) -> pykka.ActorRef[Any]:
    """Kill the live actor of that class with an unhandled exception; return its ref."""
    ref = the_one(actor_class)
    ref.tell(ProxyCall(attr_path=("no_such_method",), args=(), kwargs={}))
    deadline = time.monotonic() + 10
    while ref.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return ref


async def served_model_date(url: str) -> str | None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/api/recommend", json={"songs": ["Hey Jude"]}) as response,
    ):
        model_date: str | None = (await response.json()).get("model_date")
        return model_date


async def wait_for_model(url: str, generated_ns: int, timeout: float = 5.0) -> None:
    model_date = format_model_date(generated_ns)
    deadline = time.monotonic() + timeout
    while await served_model_date(url) != model_date:
        assert time.monotonic() < deadline, f"{model_date} not served in time"
        await asyncio.sleep(0.05)


async def test_a_crashed_rule_server_or_watcher_is_replaced_without_a_failed_request(
    running: Running, tmp_path: Path
) -> None:
    await wait_for_model(running.url, NS[0])
    stop = asyncio.Event()
    load = asyncio.create_task(generate_load(f"{running.url}/api/recommend", stop))
    await asyncio.sleep(0.3)

    for actor, generated_ns in ((RuleServer, NS[1]), (RulesWatcher, NS[2])):
        dead = await asyncio.to_thread(crash, actor)
        assert (await asyncio.to_thread(the_one, actor)) != dead
        write_model(tmp_path, small_ruleset(generated_ns))
        await wait_for_model(running.url, generated_ns)

    stop.set()
    result = await load
    assert len(result.outcomes) > 100
    assert result.failed() == []


async def test_a_crashed_frontend_is_replaced_on_the_same_port(
    running: Running, tmp_path: Path
) -> None:
    await wait_for_model(running.url, NS[0])
    stop = asyncio.Event()
    load = asyncio.create_task(generate_load(f"{running.url}/api/recommend", stop))
    await asyncio.sleep(0.3)
    dead = await asyncio.to_thread(crash, HttpFrontend)
    assert (await asyncio.to_thread(the_one, HttpFrontend)) != dead
    await asyncio.sleep(0.3)
    write_model(tmp_path, small_ruleset(NS[1]))
    await wait_for_model(running.url, NS[1])
    stop.set()
    result = await load
    assert result.server_errors() == []
    # Requests in flight finish on the old loop; new ones queue in the listen backlog.
    assert [o.error for o in result.failed()] == []


async def test_an_actor_that_keeps_dying_stops_the_server_with_status_1(tmp_path: Path) -> None:
    server = run_supervisor(tmp_path, max_restarts=2)
    # Started: the watcher, started last, answers (a crash during start-up is another case).
    await asyncio.to_thread(lambda: the_one(RulesWatcher).ask(Ping(), timeout=10))
    for _ in range(3):
        await asyncio.to_thread(crash, RuleServer)  # waits for a live one first
    await asyncio.to_thread(server.thread.join, 30)
    assert server.status == [1]
    assert pykka.ActorRegistry.get_all() == []


def test_stopping_leaves_no_thread_behind(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    server = run_supervisor(tmp_path)
    write_model(tmp_path, small_ruleset())
    the_one(RulesWatcher)
    assert server.stop() == 0
    assert pykka.ActorRegistry.get_all() == []
    deadline = time.monotonic() + 5
    while left := set(threading.enumerate()) - before:
        assert time.monotonic() < deadline, left
        time.sleep(0.02)


def test_a_frontend_that_cannot_start_stops_everything_with_status_1(tmp_path: Path) -> None:
    def broken_app(gate: RulesGate, settings: Settings) -> web.Application:
        raise RuntimeError("no app today")

    before = set(threading.enumerate())
    settings = Settings(host="127.0.0.1", port=0, data_dir=tmp_path, drain_seconds=0)
    supervisor = supervisor_for(settings, broken_app)
    assert supervisor.run() == 1
    assert pykka.ActorRegistry.get_all() == []
    deadline = time.monotonic() + 5
    while left := set(threading.enumerate()) - before:
        assert time.monotonic() < deadline, left
        time.sleep(0.02)
