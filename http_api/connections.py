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
  cause and client.
- **Request targets that are not paths.** aiohttp's router only routes paths, so ``CONNECT
  host:port`` and ``OPTIONS *`` would get aiohttp's text/plain 404; they are answered like a
  malformed request.

Timeouts are aiohttp's own: its keep-alive timer, started when a connection opens and again after
each response and acting only while no request is in progress, is the idle timeout and the
request-head timeout in one (``IDLE_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from http_api import metrics
from http_api.handlers import json_error
from http_api.settings import Settings
from http_api.validation import quote

log = logging.getLogger(__name__)

# Descriptors kept for everything but client connections: the listener, the event loop, the
# watcher, rules files being read, /proc for the metrics, logging. Measured: ~25 in use at start.
DESCRIPTOR_RESERVE = 64
# The default cap where descriptors are plentiful: an open connection costs the server 5-9 KiB
# (measured with 3,000 connections, before and after a request each), so ~36 MiB at most.
MAX_DEFAULT_CONNECTIONS = 4096
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
# An accept error or the cap is one episode until it has not recurred for this long.
EPISODE_QUIET_SECONDS = 10.0
# At the cap with no idle connection, how often to look for one that became idle.
BUSY_RECHECK_SECONDS = 0.05
# Connections accepted in a row before the loop runs anything else.
ACCEPT_BATCH = 32
ACCEPT_RETRY_MIN_SECONDS = 0.01
ACCEPT_RETRY_MAX_SECONDS = 1.0
# Malformed requests are logged once per client and cause; this many pairs are remembered.
MAX_LOGGED_MALFORMED = 4096
# How much of a cause aiohttp words from the client's bytes is kept.
MAX_CAUSE_CHARS = 120


def descriptor_limit() -> int | None:
    """The soft limit on open descriptors of this process (None: unlimited)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def default_max_connections(limit: int | None) -> int:
    """The connection cap for a descriptor ``limit``: the limit minus a reserve, bounded."""
    if limit is None:
        return MAX_DEFAULT_CONNECTIONS
    reserve = min(DESCRIPTOR_RESERVE, limit // 2)
    return max(1, min(MAX_DEFAULT_CONNECTIONS, limit - reserve))


def max_connections_problem(settings: Settings, limit: int | None) -> str | None:
    """Why ``MAX_CONNECTIONS`` cannot work under the descriptor ``limit``, or None."""
    wanted = settings.max_connections
    if wanted is None or limit is None or wanted < limit:
        return None
    return (
        f"MAX_CONNECTIONS={wanted} needs more descriptors than this process may open "
        f"({limit}, ulimit -n); use at most {default_max_connections(limit)}, or auto"
    )


class _Episode:
    """A recurring condition, logged once when it starts and once when it is over: when it has
    not recurred for ``quiet_seconds``, however often it recurred before."""

    def __init__(self, quiet_seconds: float = EPISODE_QUIET_SECONDS) -> None:
        self._quiet = quiet_seconds
        self._since: float | None = None
        self._last = 0.0
        self._count = 0

    def occurred(self, message: str, *args: object) -> None:
        """Count one occurrence; the first of an episode logs ``message`` as a warning."""
        self._last = time.monotonic()
        self._count += 1
        if self._since is None:
            self._since = self._last
            log.warning(message, *args)

    def check_over(self, message: str) -> None:
        """Log ``message`` once, with how long and how often, if the episode is over."""
        if self._since is None or time.monotonic() - self._last < self._quiet:
            return
        log.info(
            "%s (%d times from %.1f s to %.1f s ago)",
            message,
            self._count,
            time.monotonic() - self._since,
            time.monotonic() - self._last,
        )
        self._since, self._count = None, 0


class MalformedRequests:
    """Answers malformed requests: JSON, counted in /metrics, logged once per client and cause."""

    def __init__(self) -> None:
        self._observe = metrics.request_observer(metrics.MALFORMED_ROUTE, metrics.ANY_METHOD)
        self._logged: set[tuple[str, str]] = set()
        self._log_full = False

    def answer(self, client: str | None, status: int, cause: str) -> web.Response:
        """The JSON error for a malformed request (its connection closes after it)."""
        # The request line was not understood: no method to name.
        self._observe("other", status, 0.0)
        key = (client or "unknown", cause)
        if key not in self._logged:
            if len(self._logged) < MAX_LOGGED_MALFORMED:
                self._logged.add(key)
                log.warning(
                    "malformed request from %s: %d %s (logged once per client and cause; "
                    "all are counted in /metrics)",
                    key[0],
                    status,
                    cause,
                )
            elif not self._log_full:
                self._log_full = True
                log.warning(
                    "malformed requests came from over %d client/cause pairs: new ones are no "
                    "longer logged, only counted in /metrics",
                    MAX_LOGGED_MALFORMED,
                )
        response = json_error(status, f"malformed request: {cause}")
        response.force_close()
        return response


def describe_parse_error(exc: BaseException | None, status: int, max_line: int) -> tuple[int, str]:
    """The status and a one-line cause for a request aiohttp's parser refused (its lines
    limited to ``max_line`` bytes)."""
    if isinstance(exc, LineTooLong):
        return 431, f"a request line or header field is longer than {max_line} bytes"
    if isinstance(exc, HttpProcessingError):
        # aiohttp words it as "Title:\n  Detail:\n\n  b'<the bytes>'\n    ^": keep the words.
        words = exc.message.split("\n\n", 1)[0]
        words = ": ".join(line.strip().rstrip(":") for line in words.splitlines())
        cause = quote(words, MAX_CAUSE_CHARS)[1:-1]
        if cause.startswith("Too many headers"):
            return 431, cause
        return exc.code or status, cause or "the request could not be parsed"
    return status, "the request could not be parsed"


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


class ConnectionPool:
    """The open connections and their cap: at the cap, the connection idle the longest makes
    room for a new one; when all are busy, new ones wait."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        # Accepted, their transport not made yet.
        self.pending = 0
        self._open: set[JsonErrorRequestHandler] = set()
        self._freed = asyncio.Event()
        self._at_cap = _Episode()

    def __len__(self) -> int:
        return len(self._open) + self.pending

    def opened(self, connection: JsonErrorRequestHandler) -> None:
        """Count a new connection."""
        self._open.add(connection)

    def closed(self, connection: JsonErrorRequestHandler) -> None:
        """Forget a connection that has ended."""
        self._open.discard(connection)
        self._freed.set()

    def close_longest_idle(self) -> bool:
        """Close the connection idle the longest; False if every one has a request in progress."""
        idle = [(since, c) for c in self._open if (since := c.idle_since()) is not None]
        if not idle:
            return False
        _, connection = min(idle, key=lambda pair: pair[0])
        # Its descriptor is released on the loop's next turn; forget it now so that it is not
        # chosen twice.
        self._open.discard(connection)
        connection.force_close()
        return True

    async def make_room(self) -> None:
        """Return once one more connection may be served: at once below the cap; at it, after
        closing the connection idle the longest, or after waiting for one to end or go idle."""
        if len(self) < self.max_connections:
            self._at_cap.check_over("below the connection cap again")
            return
        while len(self) >= self.max_connections:
            self._at_cap.occurred(
                "at the connection cap (%d, MAX_CONNECTIONS): each new connection closes the "
                "one idle the longest; when none is idle, new ones wait",
                self.max_connections,
            )
            if self.close_longest_idle():
                return
            # Every connection has a request in progress: wait for one to end, or to finish its
            # request and become idle (aiohttp tells no one, so look again shortly).
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), BUSY_RECHECK_SECONDS)


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
        self._accept_failures = _Episode()
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


def _paths_only(
    handle: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    malformed: MalformedRequests,
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """``handle`` for requests whose target is a path; the others are answered as malformed."""

    async def not_a_path(request: web.BaseRequest) -> web.StreamResponse:
        target = quote(request.raw_path)
        cause = f"the request target {target} is not a path (no CONNECT, no OPTIONS *)"
        return malformed.answer(request.remote, 400, cause)

    def handle_request(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        # A plain function handing on the app's coroutine: no extra frame per request. The
        # router reads the same cached path_safe next.
        if request.rel_url.path_safe[:1] == "/":
            return handle(request)
        return not_a_path(request)

    return handle_request


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
        server.request_handler = _paths_only(server.request_handler, malformed)
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
