"""HttpFrontend: the actor that owns the asyncio loop thread and the aiohttp server on it.

Mopidy's HttpFrontend pattern: the actor's own thread handles messages, a second thread runs
the event loop, and the two meet only through ``loop.call_soon_threadsafe``. Nothing on the
loop ever waits for a pykka future: ``await``-ing one is ``yield; return self.get()``, a
blocking get that freezes every request (docs/actors.md). What runs on the loop (the app, the
connection handling) is the HTTP layer's: the actor gets it as one ``serve`` function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pykka
from aiohttp import web

from actors.background import BackgroundLoads, LoopShare
from actors.dispatch import LoggingActor
from actors.gate import LoopGate, RulesGate
from actors.messages import (
    RuleServerRestarted,
    SnapshotChanged,
    StartDraining,
    Subscribe,
)

log = logging.getLogger(__name__)

# Starts the HTTP server on the running loop, over the gate and the listening socket handed
# over; the runner it returns is cleaned up when the frontend stops.
Serve = Callable[[RulesGate, socket.socket], Awaitable[web.AppRunner]]
# Binding is done by the supervisor; starting the app on a bound socket takes milliseconds.
START_TIMEOUT_SECONDS = 30.0
# After a crash, how long the old loop keeps answering (with Connection: close) on the
# connections it has, so that keep-alive clients move to the successor between two requests
# instead of having a connection closed under a request they are writing.
CRASH_LINGER_SECONDS = 0.5
# After the listener stops: time for connections already accepted to be served (see below).
ACCEPTED_SETTLE_SECONDS = 0.1


class LoopLagProbe:
    """How late the loop wakes a sleeping task: the longest any callback kept it busy.

    A lag above ``warn_seconds`` is logged as a warning; at DEBUG level the largest lag of each
    ``report_seconds`` window is logged too (the reload benchmark reads those lines), with the
    largest *busy* lag: the part of a lag the loop's thread spent running (its CPU time over
    the interval), which a machine too busy to schedule the process does not inflate.
    """

    def __init__(
        self, interval: float = 0.01, warn_seconds: float = 0.1, report_seconds: float = 1.0
    ) -> None:
        self.interval = interval
        self.warn_seconds = warn_seconds
        self.report_seconds = report_seconds

    async def run(self) -> None:
        """Sample forever (until cancelled)."""
        loop = asyncio.get_running_loop()
        window_start, window_max, window_busy = loop.time(), 0.0, 0.0
        while True:
            before, cpu_before = loop.time(), time.thread_time()
            await asyncio.sleep(self.interval)
            now = loop.time()
            lag = max(now - before - self.interval, 0.0)
            busy = min(lag, time.thread_time() - cpu_before)
            if lag >= self.warn_seconds:
                log.warning("event loop was blocked for %.0f ms", lag * 1000)
            window_max, window_busy = max(window_max, lag), max(window_busy, busy)
            if now - window_start >= self.report_seconds:
                log.debug(
                    "event loop lag: max %.1f ms over %.2f s, busy max %.1f ms",
                    window_max * 1000,
                    now - window_start,
                    window_busy * 1000,
                )
                window_start, window_max, window_busy = now, 0.0, 0.0


class HttpFrontend(LoggingActor):
    """Serves the aiohttp app on ``listener`` from its own event loop thread.

    The socket is bound by the supervisor and handed over (a ``dup``), so a restarted frontend
    serves the same port and clients meanwhile wait in the listen backlog instead of being
    refused.
    """

    label = "http frontend"

    def __init__(
        self,
        listener: socket.socket,
        rule_server: pykka.ActorRef[Any],
        serve: Serve,
        shutdown_timeout_seconds: float,
        *,
        loads: BackgroundLoads | None = None,
        reload_cpu_share: float = 0.0,
    ) -> None:
        super().__init__()
        self._listener = listener
        self._rule_server = rule_server
        self._serve = serve
        self._shutdown_timeout = shutdown_timeout_seconds
        self._loop = asyncio.new_event_loop()
        self._gate = LoopGate(self._loop, rule_server)
        self._runner: web.AppRunner | None = None
        self._probe: asyncio.Task[None] | None = None
        # Idle-priority reloads get this share of the loop's time while they starve (0: none).
        self._loads = loads
        self._reload_share = reload_cpu_share
        self._step_aside: asyncio.Task[None] | None = None
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def on_start(self) -> None:
        """Start the loop thread and the server on it; subscribe to snapshots."""
        started = threading.Event()
        # Daemon as a last resort only: _close() ends and joins it on every way out.
        self._thread = threading.Thread(
            target=self._run_loop, args=(started,), name="http-frontend-loop", daemon=True
        )
        self._thread.start()
        if not started.wait(START_TIMEOUT_SECONDS):
            raise RuntimeError("the HTTP server did not start in time")
        if self._start_error is not None:
            raise RuntimeError(f"the HTTP server did not start: {self._start_error}")
        self._subscribe()

    def on_stop(self) -> None:
        """Stop listening, let in-flight requests finish (shutdown timeout), end the loop."""
        # The supervisor has drained already: connections were told to close for a while.
        self._close(linger=0.0)

    def on_failure(self, *_exc_info: object) -> None:
        """Hand the clients over to the successor the supervisor is starting, then stop."""
        self._close(linger=CRASH_LINGER_SECONDS)

    def handle(self, message: Any) -> Any:
        """Dispatch one message of the protocol."""
        match message:
            case SnapshotChanged(snapshot=snapshot):
                self._loop.call_soon_threadsafe(self._gate.set_snapshot, snapshot)
            case RuleServerRestarted(rule_server=rule_server):
                self._rule_server = rule_server
                self._loop.call_soon_threadsafe(self._gate.set_rule_server, rule_server)
                self._subscribe()
            case StartDraining():
                self._loop.call_soon_threadsafe(self._gate.start_draining)
            case _:
                self.unexpected(message)
        return None

    def _subscribe(self) -> None:
        # A dead RuleServer is restarted by the supervisor, which tells us the new one.
        with contextlib.suppress(pykka.ActorDeadError):
            self._rule_server.tell(Subscribe(self.actor_ref))

    # -- the loop thread ----------------------------------------------------------------------

    def _run_loop(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start_serving())
        except BaseException as exc:
            self._start_error = exc
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._stop_serving())
            self._listener.close()
            self._loop.close()
            started.set()
            return
        started.set()
        try:
            self._loop.run_forever()
        finally:
            self._cancel_leftover_tasks()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _cancel_leftover_tasks(self) -> None:
        """Cancel what still runs once the server is stopped, as ``asyncio.run`` does: aiohttp
        leaves the task of a connection closed by its client while it discards the rest of a
        refused body, which would be logged as "Task was destroyed but it is pending"."""
        leftover = asyncio.all_tasks(self._loop)
        for task in leftover:
            task.cancel()
        if leftover:
            self._loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))

    async def _start_serving(self) -> None:
        self._runner = await self._serve(self._gate, self._listener)
        loop = asyncio.get_running_loop()
        self._probe = loop.create_task(LoopLagProbe().run())
        if self._loads is not None and self._loads.priority == "idle" and self._reload_share > 0:
            share = LoopShare(self._reload_share)
            self._step_aside = loop.create_task(share.run(self._loads))

    async def _stop_serving(self, linger: float = 0.0) -> None:
        for task in (self._probe, self._step_aside):
            if task is not None:
                task.cancel()
        if self._runner is None:
            return
        # Stop accepting, and let the connections accepted in the last instant get their first
        # request answered (with Connection: close) before aiohttp's cleanup marks every
        # connection closing: aiohttp 3.14 then ignores data arriving on a connection whose
        # handler had not started yet, and that request hangs until the shutdown timeout.
        for site in list(self._runner.sites):
            await site.stop()
        self._gate.start_draining()
        await asyncio.sleep(max(linger, ACCEPTED_SETTLE_SECONDS))
        # Closes idle connections, then gives in-flight requests the shutdown timeout.
        await self._runner.cleanup()

    def _close(self, linger: float) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        stopping = asyncio.run_coroutine_threadsafe(self._stop_serving(linger), self._loop)
        # aiohttp waits up to the timeout for a handler, then up to it again for its cancel.
        try:
            stopping.result(timeout=linger + 2 * self._shutdown_timeout + 5)
        except Exception:
            log.exception("http frontend: stopping the server failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
