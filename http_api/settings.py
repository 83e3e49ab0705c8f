"""Server configuration, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mining.logsetup import DEFAULT_LOG_FORMAT, parse_log_format
from recommender.engine import DEFAULT_RANKING, RANKINGS


class SettingsError(ValueError):
    """An environment variable has a value the server cannot use (names the variable)."""


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} must be between {low:g} and {high:g}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _number(env, name, default, low, high)
    if value != int(value):
        raise SettingsError(f"{name}={env[name]!r} is not a whole number")
    return int(value)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE + _FALSE:
        raise SettingsError(f"{name}={env[name]!r} must be 1 or 0 (or true/false, yes/no, on/off)")
    return raw in _TRUE


def _auto_or_integer(env: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = env.get(name, "").strip()
    if raw.lower() in ("", "auto"):
        return None
    return _integer(env, name, low, low, high)


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
    max_query_songs: int = 1000
    max_body_bytes: int = 1024 * 1024
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment; raise SettingsError naming the bad variable."""
        env = os.environ if env is None else env
        watcher = env.get("WATCHER", cls.watcher).strip().lower() or cls.watcher
        if watcher not in ("auto", "inotify", "polling"):
            raise SettingsError(f"WATCHER={watcher!r} must be auto, inotify or polling")
        log_level = env.get("LOG_LEVEL", cls.log_level).strip().upper() or cls.log_level
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"LOG_LEVEL={log_level!r} is not a logging level")
        ranking = env.get("RANKING", cls.ranking).strip().lower() or cls.ranking
        if ranking not in RANKINGS:
            raise SettingsError(f"RANKING={ranking!r} must be {' or '.join(RANKINGS)}")
        host = env.get("HOST", cls.host).strip() or cls.host
        try:
            log_format = parse_log_format(env.get("LOG_FORMAT"))
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            host=host,
            port=_integer(env, "PORT", cls.port, 0, 65535),
            data_dir=Path(env.get("DATA_DIR", "").strip() or cls.data_dir),
            drain_seconds=_number(env, "DRAIN_SECONDS", cls.drain_seconds, 0, 600),
            shutdown_timeout_seconds=_number(
                env, "SHUTDOWN_TIMEOUT_SECONDS", cls.shutdown_timeout_seconds, 0, 600
            ),
            rules_wait_seconds=_number(env, "RULES_WAIT_SECONDS", cls.rules_wait_seconds, 0, 600),
            checkpoint_poll_seconds=_number(
                env, "CHECKPOINT_POLL_SECONDS", cls.checkpoint_poll_seconds, 0.1, 3600
            ),
            watcher=watcher,
            max_query_songs=_integer(env, "MAX_QUERY_SONGS", cls.max_query_songs, 1, 100_000),
            max_body_bytes=_integer(env, "MAX_BODY_BYTES", cls.max_body_bytes, 1024, 1 << 30),
            max_connections=_auto_or_integer(env, "MAX_CONNECTIONS", 1, 1_000_000),
            idle_timeout_seconds=_number(
                env, "IDLE_TIMEOUT_SECONDS", cls.idle_timeout_seconds, 0.1, 86_400
            ),
            body_timeout_seconds=_number(
                env, "BODY_TIMEOUT_SECONDS", cls.body_timeout_seconds, 0.1, 3600
            ),
            log_level=log_level,
            log_format=log_format,
            access_log=_flag(env, "ACCESS_LOG", cls.access_log),
            ranking=ranking,
        )
