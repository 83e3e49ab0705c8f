"""How many connections the server keeps open: the cap from the descriptor limit, and the pool
that enforces it by closing the connection idle the longest (http_api/connections.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from typing import Protocol

from http_api.settings import Settings

# The connection layer's one logger (http_api/connections.py, malformed.py and this module).
log = logging.getLogger("http_api.connections")

# Descriptors kept for everything but client connections: the listener, the event loop, the
# watcher, rules files being read, /proc for the metrics, logging. Measured: ~25 in use at start.
DESCRIPTOR_RESERVE = 64
# The default cap where descriptors are plentiful: an open connection costs the server 5-9 KiB
# (measured with 3,000 connections, before and after a request each), so ~36 MiB at most.
MAX_DEFAULT_CONNECTIONS = 4096
# An accept error or the cap is one episode until it has not recurred for this long.
EPISODE_QUIET_SECONDS = 10.0
# At the cap with no idle connection, how often to look for one that became idle.
BUSY_RECHECK_SECONDS = 0.05


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


class Episode:
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


class PooledConnection(Protocol):
    """What the pool needs of a connection (connections.JsonErrorRequestHandler)."""

    def idle_since(self) -> float | None:
        """A time ordering idle connections (oldest first), or None while one is busy."""

    def force_close(self) -> None:
        """Close the connection."""


class ConnectionPool:
    """The open connections and their cap: at the cap, the connection idle the longest makes
    room for a new one; when all are busy, new ones wait."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        # Accepted, their transport not made yet.
        self.pending = 0
        self._open: set[PooledConnection] = set()
        self._freed = asyncio.Event()
        self._at_cap = Episode()

    def __len__(self) -> int:
        return len(self._open) + self.pending

    def opened(self, connection: PooledConnection) -> None:
        """Count a new connection."""
        self._open.add(connection)

    def closed(self, connection: PooledConnection) -> None:
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
