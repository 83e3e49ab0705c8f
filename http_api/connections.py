"""Below the app: accepting, capping and timing out connections, and answering malformed requests.

aiohttp (3.14) leaves three things to the application, and this module does them:

- **A connection cap.** asyncio accepts every connection the kernel queues. Once the process runs
  out of descriptors, ``accept()`` fails with EMFILE, and Python 3.11's accept loop logs a
  traceback for every attempt (hundreds of MB of log a minute) while ``/healthz`` waits in the
  queue. :class:`CappedSite` accepts with its own loop instead: at most ``max_connections`` are
  open (by default the descriptor limit minus a reserve), and at the cap the connection idle the
  longest is closed to make room, as nginx reuses its idle keep-alive connections when it runs
  out, so no crowd of silent connections can lock a health check out. Only when every connection
  has a request in progress do new ones wait, in the listen backlog. An accept error, and the
  cap, are logged once per episode, not per attempt.
- **JSON for malformed requests.** A request aiohttp's parser refuses (a lowercase method, a bad
  header or Content-Length, a bad chunk, no Host, a head line over 8,190 bytes, ...) is answered
  by aiohttp itself, in text/plain, outside the app, with a traceback in the log.
  :class:`JsonErrorRequestHandler` overrides its ``handle_error``: the answer is the API's JSON
  error, counted in ``/metrics`` under the route ``malformed``, and logged in one line, once per
  cause and client (malformed.py).
- **Request targets that are not paths.** aiohttp's router only routes paths, so ``CONNECT
  host:port`` and ``OPTIONS *`` would get aiohttp's text/plain 404; they are answered like a
  malformed request.

Timeouts are aiohttp's own: its keep-alive timer, started when a connection opens and again after
each response and acting only while no request is in progress, is the idle timeout and the
request-head timeout in one (``IDLE_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from http_api.capacity import ConnectionPool, Episode, default_max_connections, descriptor_limit
from http_api.errors import json_error
from http_api.malformed import MalformedRequests, describe_parse_error, paths_only
from http_api.settings import Settings

log = logging.getLogger(__name__)

# Errors of one connection that died while queued (accept(2) says: retry at once).
_TRANSIENT_ACCEPT_ERRORS = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ENONET,
        errno.ENOPROTOOPT,
        errno.EOPNOTSUPP,
    }
)
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Connections accepted in a row before the loop runs anything else.
ACCEPT_BATCH = 32
ACCEPT_RETRY_MIN_SECONDS = 0.01
ACCEPT_RETRY_MAX_SECONDS = 1.0


class JsonErrorRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol, answering malformed requests in JSON and reporting to its
    pool when it opens, closes and is idle."""

    __slots__ = ("_malformed", "_pool")

    def __init__(
        self,
        pool: ConnectionPool,
        malformed: MalformedRequests,
        manager: web.Server,
        **options: Any,
    ) -> None:
        super().__init__(manager, **options)
        self._pool = pool
        self._malformed = malformed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start serving the connection and count it."""
        super().connection_made(transport)
        self._pool.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop counting the connection, then let aiohttp clean up."""
        self._pool.closed(self)
        super().connection_lost(exc)

    def idle_since(self) -> float | None:
        """A time that orders connections by how long they have been idle, or None while a
        request is in progress or the connection is closing."""
        # aiohttp's own state: a handler is running, parsed requests are queued, or it closes.
        if self._request_in_progress or self._messages or self._force_close:
            return None
        # Idle is waiting for the next request, as aiohttp's own idle timer has it: not the turn
        # of the loop between taking a request from the queue and starting its handler (a task
        # that starts a turn later on Python 3.11), when neither of the above shows it.
        if self._waiter is None or self._waiter.done():
            return None
        # Set when the connection opened and after each response: the idle timer's deadline.
        return self._next_keepalive_close_time

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The JSON answer to a request that failed before reaching the app (or escaped it)."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; no error answer can follow")
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            # Not the client's fault: a bug, logged in full.
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            response = json_error(status, "internal server error")
            response.force_close()
            return response
        status, cause = describe_parse_error(exc, status, self.max_field_size)
        return self._malformed.answer(request.remote, status, cause)


class CappedSite(web.BaseSite):
    """Serves a runner's app on a listening socket through the pool's cap (see the module)."""

    __slots__ = ("_accept_failures", "_connecting", "_factory", "_name", "_pool", "_sock", "_task")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        pool: ConnectionPool,
        protocol_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        super().__init__(runner)
        self._sock = sock
        self._pool = pool
        self._factory = protocol_factory
        self._task: asyncio.Task[None] | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self._accept_failures = Episode()
        host, port = sock.getsockname()[:2]
        self._name = f"http://{host}:{port}"

    @property
    def name(self) -> str:
        """The site's URL."""
        return self._name

    async def start(self) -> None:
        """Start accepting connections."""
        await super().start()
        self._sock.setblocking(False)
        self._task = asyncio.get_running_loop().create_task(self._accept_forever())

    async def stop(self) -> None:
        """Stop accepting and close the listening socket (open connections stay)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise
            self._task = None
        self._sock.close()
        await super().stop()

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        retry = ACCEPT_RETRY_MIN_SECONDS
        accepted = 0
        while True:
            try:
                # At once when a connection is queued: accept() is tried before any wait.
                conn, _address = await loop.sock_accept(self._sock)
            except OSError as exc:
                if exc.errno in _TRANSIENT_ACCEPT_ERRORS:
                    continue
                self._accept_failures.occurred(
                    "cannot accept connections: %s (%d open, descriptor limit %s); retrying, "
                    "new connections wait in the listen backlog",
                    os.strerror(exc.errno) if exc.errno else exc,
                    len(self._pool),
                    descriptor_limit(),
                )
                if exc.errno in _OUT_OF_DESCRIPTORS and self._pool.close_longest_idle():
                    # An idle connection's descriptor is the one a waiting client can have: it
                    # is released on the loop's next turn.
                    await asyncio.sleep(0)
                else:
                    await asyncio.sleep(retry)
                    retry = min(2 * retry, ACCEPT_RETRY_MAX_SECONDS)
                continue
            retry = ACCEPT_RETRY_MIN_SECONDS
            self._accept_failures.check_over("accepting connections again")
            # Accepted first (the descriptor reserve covers one over the cap), so that only a
            # connection that is really there ever closes another.
            await self._pool.make_room()
            self._serve(loop, conn)
            accepted += 1
            if accepted % ACCEPT_BATCH == 0:
                # A flood of queued connections is taken without waiting: let the rest run too.
                await asyncio.sleep(0)

    def _serve(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        """Make the connection's transport and protocol (in a task: the next accept need not
        wait for it)."""
        self._pool.pending += 1
        task = loop.create_task(self._connect(loop, conn))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(self._factory, conn)
        except OSError:
            # The client left before its connection could be set up.
            conn.close()
        finally:
            self._pool.pending -= 1


async def start_serving(
    app: web.Application, listener: socket.socket, settings: Settings, **handler_options: Any
) -> web.AppRunner:
    """Serve ``app`` on ``listener`` (taking ownership of it) with the cap, timeouts and JSON
    errors above; ``handler_options`` go to aiohttp's AppRunner (``access_log``, ...)."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        keepalive_timeout=settings.idle_timeout_seconds,
        **handler_options,
    )
    await runner.setup()
    try:
        server = runner.server
        assert server is not None
        malformed = MalformedRequests()
        server.request_handler = paths_only(server.request_handler, malformed)
        limit = descriptor_limit()
        pool = ConnectionPool(settings.max_connections or default_max_connections(limit))
        loop = asyncio.get_running_loop()
        # What aiohttp's own Server.__call__ passes: the runner's options, the app's
        # handler_args (auto_decompress=False, see app.py) and its debug flag.
        options = server._kwargs

        def protocol() -> JsonErrorRequestHandler:
            return JsonErrorRequestHandler(pool, malformed, server, loop=loop, **options)

        await CappedSite(runner, listener, pool, protocol).start()
        log.debug(
            "serving with at most %d connections (descriptor limit %s), idle timeout %g s",
            pool.max_connections,
            limit,
            settings.idle_timeout_seconds,
        )
    except BaseException:
        await runner.cleanup()
        raise
    return runner
