"""The supervisor: plain code that starts, watches, restarts and stops the three actors.

pykka has no supervision: an exception escaping a one-way handler stops an actor and nobody is
told. So, like Mopidy's ``_app/server.py`` plus an Erlang one-for-one restart policy: start in
dependency order and ping each actor until its ``on_start`` has run, poll their liveness and
restart one that died (giving up if it dies too often), and on SIGTERM drain, then stop in
reverse order inside ``finally``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykka

from actors.background import BackgroundLoads
from actors.frontend import HttpFrontend, Serve
from actors.messages import Ping, RuleServerRestarted, StartDraining
from actors.rule_server import RuleServer
from actors.watcher import RulesWatcher
from recommender.reporting import LoadReporter, SilentReporter

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
# Connections that arrive while a crashed frontend is replaced wait here instead of failing.
LISTEN_BACKLOG = 1024


class SupervisorError(RuntimeError):
    """An actor would not start, or kept dying: the server cannot go on."""


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (port 0: any free port); raise OSError if impossible."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)


@dataclass(frozen=True)
class ActorSettings:
    """What the actors are told: plain values the entry point takes from its own settings."""

    data_dir: Path
    # "auto" (inotify, falling back to polling), "inotify" or "polling".
    watcher: str = "auto"
    # The checkpoint is re-read this often, for volumes where inotify sees nothing (NFS).
    checkpoint_poll_seconds: float = 1.5
    # SIGTERM: /readyz answers 503 at once, requests are still served for this long...
    drain_seconds: float = 5.0
    # ...then in-flight requests get this long to finish before the actors stop.
    shutdown_timeout_seconds: float = 10.0
    # Reloads run at "idle" CPU priority, or "normal" on the RuleServer's thread...
    reload_priority: str = "idle"
    # ...and an idle-priority one gets about this share of a core the requests keep busy.
    reload_cpu_share: float = 0.2


@dataclass
class _Child:
    name: str
    start: Callable[[], pykka.ActorRef[Any]]
    ref: pykka.ActorRef[Any] | None = None
    restarts: list[float] = field(default_factory=list)


class Supervisor:
    """Runs RuleServer, HttpFrontend and RulesWatcher until :meth:`request_stop`."""

    def __init__(
        self,
        settings: ActorSettings,
        listener: socket.socket,
        serve: Serve,
        *,
        reporter: LoadReporter | None = None,
        monitor_seconds: float = 0.2,
        max_restarts: int = 5,
        restart_window_seconds: float = 60.0,
    ) -> None:
        self._settings = settings
        self._listener = listener
        self._serve = serve
        self._reporter = reporter or SilentReporter()
        # Outlives restarts: a restarted frontend steps aside for a load already running.
        self._loads = BackgroundLoads(settings.reload_priority)
        self._monitor_seconds = monitor_seconds
        self._max_restarts = max_restarts
        self._restart_window = restart_window_seconds
        self._stop_requested = threading.Event()
        self._drain_cut_short = threading.Event()
        self._stop_reason = ""
        self._rule_server = _Child("rule server", self._start_rule_server)
        self._frontend = _Child("http frontend", self._start_frontend)
        self._watcher = _Child("rules watcher", self._start_watcher)
        self._children = (self._rule_server, self._frontend, self._watcher)

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the server listens on (the real port when PORT was 0)."""
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def request_stop(self, reason: str, *, drain: bool = True) -> None:
        """Start the graceful shutdown, with the drain unless ``drain`` is false; a second
        request cuts the drain short.

        Only sets events, so it is safe from a signal handler and from any thread.
        """
        if not drain or self._stop_requested.is_set():
            self._drain_cut_short.set()
        if self._stop_requested.is_set():
            return
        self._stop_reason = reason
        self._stop_requested.set()

    def run(self) -> int:
        """Start the actors, supervise them until a stop is requested, drain, stop; exit code."""
        try:
            for child in self._children:
                self._start(child)
            host, port = self.address
            log.info("listening on http://%s:%d (data dir %s)", host, port, self._settings.data_dir)
            while not self._stop_requested.wait(self._monitor_seconds):
                self._restart_dead()
            self._drain()
            return 0
        except SupervisorError as exc:
            log.error("%s", exc)
            return 1
        finally:
            self._stop_all()

    # -- starting -----------------------------------------------------------------------------

    def _start_rule_server(self) -> pykka.ActorRef[Any]:
        return RuleServer.start(self._settings.data_dir, reporter=self._reporter, loads=self._loads)

    def _start_frontend(self) -> pykka.ActorRef[Any]:
        assert self._rule_server.ref is not None
        # Each frontend gets its own descriptor of the one listening socket: closing it on the
        # way out leaves the socket listening for a successor until we close ours.
        return HttpFrontend.start(
            self._listener.dup(),
            self._rule_server.ref,
            self._serve,
            self._settings.shutdown_timeout_seconds,
            loads=self._loads,
            reload_cpu_share=self._settings.reload_cpu_share,
        )

    def _start_watcher(self) -> pykka.ActorRef[Any]:
        assert self._rule_server.ref is not None
        return RulesWatcher.start(
            self._settings.data_dir,
            self._rule_server.ref,
            mode=self._settings.watcher,
            poll_seconds=self._settings.checkpoint_poll_seconds,
        )

    def _start(self, child: _Child) -> None:
        ref = child.start()
        try:
            ref.ask(Ping(), timeout=START_TIMEOUT_SECONDS)
        except pykka.ActorDeadError:
            raise SupervisorError(f"the {child.name} failed to start (see above)") from None
        except pykka.Timeout:
            ref.stop(block=False)
            raise SupervisorError(
                f"the {child.name} did not start within {START_TIMEOUT_SECONDS:.0f} s"
            ) from None
        child.ref = ref

    # -- supervising --------------------------------------------------------------------------

    def _restart_dead(self) -> None:
        for child in self._children:
            if child.ref is not None and not child.ref.is_alive():
                self._restart(child)

    def _restart(self, child: _Child) -> None:
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < self._restart_window]
        child.restarts.append(now)
        if len(child.restarts) > self._max_restarts:
            raise SupervisorError(
                f"the {child.name} died {len(child.restarts)} times within "
                f"{self._restart_window:.0f} s: giving up"
            )
        log.error("the %s died (see above): starting a new one", child.name)
        try:
            self._start(child)
        except SupervisorError as exc:
            # child.ref still names the dead actor: the next round tries again, and counts.
            log.error("%s", exc)
            return
        assert child.ref is not None
        if child is self._rule_server:
            for dependant in (self._frontend, self._watcher):
                self._tell(dependant, RuleServerRestarted(child.ref))
        elif child is self._frontend and self._stop_requested.is_set():
            self._tell(child, StartDraining())

    @staticmethod
    def _tell(child: _Child, message: Any) -> None:
        if child.ref is None:
            return
        # A dead one is restarted on the next round and starts from the current state.
        with contextlib.suppress(pykka.ActorDeadError):
            child.ref.tell(message)

    # -- stopping -----------------------------------------------------------------------------

    def _drain(self) -> None:
        self._tell(self._frontend, StartDraining())
        if self._drain_cut_short.is_set():
            log.info("%s: stopping without a drain", self._stop_reason)
            drain = 0.0
        else:
            drain = self._settings.drain_seconds
            log.info(
                "%s: draining for %.1f s (/readyz answers 503, responses close their connections)",
                self._stop_reason,
                drain,
            )
        deadline = time.monotonic() + drain
        while (remaining := deadline - time.monotonic()) > 0:
            if self._drain_cut_short.wait(min(self._monitor_seconds, remaining)):
                log.info("asked again to stop: cutting the drain short")
                break
            self._restart_dead()
        log.info(
            "drain over: no new connections; in-flight requests get up to %.1f s",
            self._settings.shutdown_timeout_seconds,
        )

    def _stop_all(self) -> None:
        # Our descriptor of the listening socket goes first, so the frontend's cleanup
        # really stops listening.
        self._listener.close()
        for child in reversed(self._children):
            if child.ref is None:
                continue
            timeout = STOP_TIMEOUT_SECONDS
            if child is self._frontend:
                timeout += 2 * self._settings.shutdown_timeout_seconds
            try:
                child.ref.stop(block=True, timeout=timeout)
            except pykka.Timeout:
                log.error("the %s did not stop within %.0f s", child.name, timeout)
        # A safety net, as in Mopidy: anything still running would keep the process alive.
        pykka.ActorRegistry.stop_all(block=True, timeout=STOP_TIMEOUT_SECONDS)
        log.info("all actors stopped")
