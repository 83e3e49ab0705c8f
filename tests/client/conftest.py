"""A scriptable recommend server on loopback, and the client run as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.helpers.processes import REPO, free_port

FAKE_VERSION = "1.2.3"
FAKE_MODEL_DATE = "2026-11-28 19:45:01.123456"


@dataclass
class FakeServer:
    """An aiohttp server speaking the recommend contract; `behaviour` picks the reply."""

    port: int
    behaviour: str = "ok"
    version: str = FAKE_VERSION
    model_date: str = FAKE_MODEL_DATE
    # When set, reply n carries version_cycle[n % len]: pods of two versions behind a
    # round-robin load balancer.
    version_cycle: tuple[str, ...] = ()
    delay: float = 0.0
    # Fields added to every successful reply (a newer server's from_rules, unknown, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    bodies: list[Any] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one recommend request according to the current behaviour."""
        body = await request.json()
        self.bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.behaviour == "reject":
            return web.json_response({"error": "songs must not be empty"}, status=400)
        if self.behaviour == "crash":
            raise web.HTTPInternalServerError(text="Internal Server Error")
        if self.behaviour == "unavailable":
            return web.json_response(
                {"error": "no rules loaded yet"}, status=503, headers={"Retry-After": "5"}
            )
        if self.behaviour == "html":
            return web.Response(
                text="<html><body>proxy says hi</body></html>", content_type="text/html"
            )
        limit = body.get("limit", 3)
        songs = [f"{song} (remix {n})" for song in body["songs"] for n in range(limit)][:limit]
        version = (
            self.version_cycle[(len(self.bodies) - 1) % len(self.version_cycle)]
            if self.version_cycle
            else self.version
        )
        return web.json_response(
            {"songs": songs, "version": version, "model_date": self.model_date, **self.extra}
        )

    async def start(self) -> None:
        """Listen on 127.0.0.1:port (again, after a stop)."""
        app = web.Application()
        app.router.add_post("/api/recommend", self.handle)
        app.router.add_post("/prefix/api/recommend", self.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening: clients get connection refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeServer]:
    """A started FakeServer on a free loopback port."""
    server = FakeServer(port=free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass(frozen=True)
class Completed:
    """A finished client process."""

    returncode: int
    stdout: str
    stderr: str


def client_command(args: Sequence[str]) -> list[str]:
    """The argv of `python -m client ARGS` with this interpreter."""
    return [sys.executable, "-m", "client", *args]


def client_env(**extra: str) -> dict[str, str]:
    """The environment for a client subprocess."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


async def _run_client(*args: str, timeout: float = 30, **env: str) -> Completed:
    """Run `python -m client ARGS` to completion while this event loop keeps serving."""
    process = await asyncio.create_subprocess_exec(
        *client_command(args),
        cwd=REPO,
        env=client_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), stderr.decode())


RunClient = Callable[..., Awaitable[Completed]]


@pytest.fixture
def run_client() -> RunClient:
    """`await run_client(*args, timeout=..., **env)` runs the client to completion."""
    return _run_client


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening: connection refused."""
    return free_port()


StartClient = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def start_client() -> AsyncIterator[StartClient]:
    """`await start_client(*args)` starts the client with piped output; killed at teardown."""
    processes: list[asyncio.subprocess.Process] = []

    async def start(*args: str, **env: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *client_command(args),
            cwd=REPO,
            env=client_env(**env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        processes.append(process)
        return process

    try:
        yield start
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


RunPipeline = Callable[..., Awaitable[Completed]]


@pytest.fixture
def run_pipeline() -> RunPipeline:
    """`await run_pipeline(reader, *args)`: bash runs `client ARGS | READER`; client's status."""

    async def run(reader: str, *args: str, timeout: float = 30) -> Completed:
        command = " ".join(shlex.quote(word) for word in client_command(args))
        shell = await asyncio.create_subprocess_exec(
            "/bin/bash",
            "-c",
            f"{command} | {reader}; exit ${{PIPESTATUS[0]}}",
            cwd=REPO,
            env=client_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(shell.communicate(), timeout)
        assert shell.returncode is not None
        return Completed(shell.returncode, stdout.decode(), stderr.decode())

    return run
