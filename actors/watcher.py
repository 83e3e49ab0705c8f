"""RulesWatcher: turns file-system events and a periodic tick into :class:`CheckRules`."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import pykka
from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from actors.backoff import Backoff
from actors.dispatch import LoggingActor
from actors.messages import (
    CheckRules,
    DebounceElapsed,
    RuleServerRestarted,
    RulesFilesChanged,
    Tick,
    WatchedDirectoryVanished,
)
from actors.timers import Timers
from mining.datadir import is_layout_file

log = logging.getLogger(__name__)

# Writes and metadata changes (a chmod or chown may end a permission problem) only. Opening and
# reading are events too (inotify IN_OPEN, IN_CLOSE_NOWRITE), and the RuleServer reads the
# checkpoint on every check: reacting to reads would check forever.
CHANGE_EVENTS = (
    FileAttribEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirMovedEvent,
    DirDeletedEvent,
)
# How DATA_DIR is watched: inotify, falling back to polling; only inotify; only polling.
WATCHER_MODES = ("auto", "inotify", "polling")
# One miner run is ~16 inotify events within a few ms; one check after the burst is enough.
DEBOUNCE_SECONDS = 0.075


def names_watched_file(event: FileSystemEvent) -> bool:
    """True if the event changes the checkpoint or a rules file (reading them does not).

    An atomic replace arrives as a move whose ``dest_path`` is the target (``src_path`` is the
    temporary file), so both ends are looked at.
    """
    return isinstance(event, CHANGE_EVENTS) and any(
        path and is_layout_file(os.path.basename(os.fsdecode(path)))
        for path in (event.src_path, event.dest_path)
    )


def _directory_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class _Forwarder(FileSystemEventHandler):
    """Runs on watchdog's thread: filters events and tells the watcher actor (never blocks)."""

    def __init__(self, watcher: pykka.ActorRef[Any], directory: Path) -> None:
        self._watcher = watcher
        self._directory = os.path.normpath(directory)

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Forward what matters: our two files, or the watched directory itself going away."""
        try:
            if names_watched_file(event):
                self._watcher.tell(RulesFilesChanged())
            elif (
                event.is_directory
                and event.event_type in ("deleted", "moved")
                and os.path.normpath(os.fsdecode(event.src_path)) == self._directory
            ):
                self._watcher.tell(WatchedDirectoryVanished())
        except pykka.ActorDeadError:
            pass  # the watcher stopped; its observer is being stopped too


class RulesWatcher(LoggingActor):
    """Watches DATA_DIR (inotify, else polling) and tells the RuleServer to check the rules.

    Every ``poll_seconds`` it also tells the RuleServer to check regardless of events, because
    inotify sees nothing written by another node of a network volume, and checks that its
    observer still watches the directory that is there now (a deleted watched directory kills
    inotify's emitter silently), restarting it with backoff.
    """

    label = "rules watcher"

    def __init__(
        self,
        data_dir: Path,
        rule_server: pykka.ActorRef[Any],
        mode: str = "auto",
        poll_seconds: float = 1.5,
        debounce_seconds: float = DEBOUNCE_SECONDS,
    ) -> None:
        super().__init__()
        if mode not in WATCHER_MODES:
            raise ValueError(f"watcher mode must be auto, inotify or polling, not {mode!r}")
        self._data_dir = Path(data_dir)
        self._rule_server = rule_server
        self._mode = mode
        self._poll_seconds = poll_seconds
        self._debounce_seconds = debounce_seconds
        self._observer: BaseObserver | None = None
        self._watched_identity: tuple[int, int] | None = None
        self._restart_backoff = Backoff(first=0.5, cap=30.0)
        self._next_start = 0.0
        self._inotify_failed = False
        self._reported: str | None = None
        self._timers = Timers(self.actor_ref)

    @property
    def observer_kind(self) -> str | None:
        """ "inotify" or "polling" while an observer runs, else None (read through a proxy)."""
        if self._observer is None:
            return None
        return "polling" if isinstance(self._observer, PollingObserver) else "inotify"

    def on_start(self) -> None:
        """Start watching (or note that DATA_DIR is missing) and ask for a first check."""
        self._ensure_observer()
        self._check_rules()
        self._timers.start("tick", self._poll_seconds, Tick())

    def on_stop(self) -> None:
        """Stop the timers and the observer thread."""
        self._release()

    def on_failure(self, *_exc_info: object) -> None:
        """Same as stopping: the supervisor starts a fresh watcher."""
        self._release()

    def handle(self, message: Any) -> Any:
        """Dispatch one message of the protocol."""
        match message:
            case RulesFilesChanged():
                if not self._timers.pending("debounce"):
                    self._timers.start("debounce", self._debounce_seconds, DebounceElapsed())
            case DebounceElapsed():
                self._check_rules()
            case Tick():
                self._timers.start("tick", self._poll_seconds, Tick())
                self._check_rules()
                self._ensure_observer()
            case WatchedDirectoryVanished():
                self._ensure_observer()
            case RuleServerRestarted(rule_server=rule_server):
                self._rule_server = rule_server
                self._check_rules()
            case _:
                self.unexpected(message)
        return None

    def _check_rules(self) -> None:
        # A dead RuleServer is restarted by the supervisor, which tells us the new one.
        with contextlib.suppress(pykka.ActorDeadError):
            self._rule_server.tell(CheckRules())

    # -- the observer -------------------------------------------------------------------------

    def _ensure_observer(self) -> None:
        """Stop an observer that no longer watches DATA_DIR; start one if due."""
        identity = _directory_identity(self._data_dir)
        if self._observer is not None:
            emitters_alive = all(e.is_alive() for e in self._observer.emitters)
            if (
                identity == self._watched_identity
                and self._observer.is_alive()
                and emitters_alive
                and self._observer.emitters
            ):
                return
            self._report(
                f"{self._data_dir} was deleted or replaced: watching it again", logging.WARNING
            )
            self._stop_observer()
        if identity is None:
            self._report(f"{self._data_dir} does not exist (yet): checking again every tick")
            return
        if time.monotonic() < self._next_start:
            return
        try:
            self._observer = self._start_observer()
        except OSError as exc:
            delay = self._restart_backoff.next_delay()
            self._next_start = time.monotonic() + delay
            self._report(
                f"cannot watch {self._data_dir} ({exc}); trying again in {delay:.1f} s",
                logging.WARNING,
            )
            return
        self._watched_identity = identity
        self._restart_backoff.reset()
        self._next_start = 0.0
        self._report(f"watching {self._data_dir} with {self.observer_kind}")
        # Files may have been written while nothing watched.
        self._check_rules()

    def _start_observer(self) -> BaseObserver:
        forwarder = _Forwarder(self.actor_ref, self._data_dir)
        if self._mode == "inotify" or (self._mode == "auto" and not self._inotify_failed):
            observer: BaseObserver = Observer()
            observer.schedule(
                forwarder, str(self._data_dir), recursive=False, event_filter=[*CHANGE_EVENTS]
            )
            try:
                observer.start()
                return observer
            except FileNotFoundError:
                raise  # the directory vanished since the stat: not a reason to poll
            except OSError as exc:
                if self._mode == "inotify":
                    raise
                # Out of inotify instances or watches (EMFILE/ENOSPC), or no inotify at all.
                self._inotify_failed = True
                log.warning("inotify unavailable (%s): watching %s by polling", exc, self._data_dir)
        observer = PollingObserver(timeout=self._poll_seconds)
        observer.schedule(
            forwarder, str(self._data_dir), recursive=False, event_filter=[*CHANGE_EVENTS]
        )
        observer.start()
        return observer

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        self._watched_identity = None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def _report(self, news: str, level: int = logging.INFO) -> None:
        if news != self._reported:
            self._reported = news
            log.log(level, "%s", news)

    def _release(self) -> None:
        self._timers.cancel_all()
        self._stop_observer()
