"""Server configuration, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from actors.background import MAX_SHARE, RELOAD_PRIORITIES
from actors.supervisor import ActorSettings
from actors.watcher import WATCHER_MODES
from mining.envsettings import EnvReader, SettingsError
from mining.limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_QUERY_SONGS,
    MAX_BODY_BYTES_RANGE,
    MAX_QUERY_SONGS_RANGE,
)
from mining.logsetup import DEFAULT_LOG_FORMAT, parse_log_format
from recommender.engine import DEFAULT_RANKING, RANKINGS

__all__ = ["Settings", "SettingsError"]


@dataclass(frozen=True)
class Settings:
    """Everything ``python -m http_api`` can be told through its environment."""

    host: str = "127.0.0.1"
    port: int = 52004
    data_dir: Path = Path("./ml-data")
    # SIGTERM: /readyz answers 503 at once, requests are still served for this long...
    drain_seconds: float = 5.0
    # ...then in-flight requests get this long to finish before the actors stop.
    shutdown_timeout_seconds: float = 10.0
    # How long a request made before any rules exist is held before a 503.
    rules_wait_seconds: float = 5.0
    # The checkpoint is re-read this often, for volumes where inotify sees nothing (NFS).
    checkpoint_poll_seconds: float = 1.5
    # "auto" (inotify, falling back to polling), "inotify" or "polling".
    watcher: str = "auto"
    max_query_songs: int = DEFAULT_MAX_QUERY_SONGS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Most open client connections; None: as many as the descriptor limit leaves room for
    # (http_api.capacity.default_max_connections).
    max_connections: int | None = None
    # A connection with no request in progress is closed after this long: one that never sends
    # a complete request head (so this is also the header timeout), or a keep-alive one between
    # requests. Longer than the 60 s idle timeout of common proxies' upstream pools.
    idle_timeout_seconds: float = 75.0
    # A request body that has not fully arrived this long after its head gets a 408.
    body_timeout_seconds: float = 10.0
    log_level: str = "INFO"
    log_format: str = DEFAULT_LOG_FORMAT
    # One log line per answered request (off: it costs more than the recommendation).
    access_log: bool = False
    # How candidates are ranked: one of recommender.engine.RANKINGS.
    ranking: str = DEFAULT_RANKING
    # Reloads after the first run at "idle" CPU priority (or "normal"), and an idle one gets
    # about this share of a core the requests keep busy (actors/background.py).
    reload_priority: str = "idle"
    reload_cpu_share: float = 0.2

    def for_actors(self) -> ActorSettings:
        """The plain values the supervisor and its actors are given."""
        return ActorSettings(
            data_dir=self.data_dir,
            watcher=self.watcher,
            checkpoint_poll_seconds=self.checkpoint_poll_seconds,
            drain_seconds=self.drain_seconds,
            shutdown_timeout_seconds=self.shutdown_timeout_seconds,
            reload_priority=self.reload_priority,
            reload_cpu_share=self.reload_cpu_share,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment; raise SettingsError naming the bad variable."""
        read = EnvReader(env)
        return cls(
            host=read.text("HOST", cls.host),
            port=read.integer("PORT", cls.port, 0, 65535),
            data_dir=Path(read.text("DATA_DIR", str(cls.data_dir))),
            drain_seconds=read.number("DRAIN_SECONDS", cls.drain_seconds, 0, 600),
            shutdown_timeout_seconds=read.number(
                "SHUTDOWN_TIMEOUT_SECONDS", cls.shutdown_timeout_seconds, 0, 600
            ),
            rules_wait_seconds=read.number("RULES_WAIT_SECONDS", cls.rules_wait_seconds, 0, 600),
            checkpoint_poll_seconds=read.number(
                "CHECKPOINT_POLL_SECONDS", cls.checkpoint_poll_seconds, 0.1, 3600
            ),
            watcher=read.choice("WATCHER", WATCHER_MODES, cls.watcher),
            max_query_songs=read.integer(
                "MAX_QUERY_SONGS", cls.max_query_songs, *MAX_QUERY_SONGS_RANGE
            ),
            max_body_bytes=read.integer(
                "MAX_BODY_BYTES", cls.max_body_bytes, *MAX_BODY_BYTES_RANGE
            ),
            max_connections=read.auto_or_integer("MAX_CONNECTIONS", 1, 1_000_000),
            idle_timeout_seconds=read.number(
                "IDLE_TIMEOUT_SECONDS", cls.idle_timeout_seconds, 0.1, 86_400
            ),
            body_timeout_seconds=read.number(
                "BODY_TIMEOUT_SECONDS", cls.body_timeout_seconds, 0.1, 3600
            ),
            log_level=read.log_level(cls.log_level),
            log_format=parse_log_format(read.env.get("LOG_FORMAT")),
            access_log=read.flag("ACCESS_LOG", cls.access_log),
            ranking=read.choice("RANKING", RANKINGS, cls.ranking),
            reload_priority=read.choice("RELOAD_PRIORITY", RELOAD_PRIORITIES, cls.reload_priority),
            reload_cpu_share=read.number("RELOAD_CPU_SHARE", cls.reload_cpu_share, 0, MAX_SHARE),
        )
