"""``python -m http_api``: read the settings, bind the port, run the actors until SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from actors import Supervisor, bind_listener
from http_api.app import init_app
from http_api.connections import descriptor_limit, max_connections_problem
from http_api.settings import Settings, SettingsError

log = logging.getLogger("http_api")

_VARIABLES = (
    ("HOST", "address to bind", Settings.host),
    ("PORT", "port to bind, 0 for any free one", Settings.port),
    ("DATA_DIR", "where rules.cbor and the checkpoint are read", f"./{Settings.data_dir}"),
    ("DRAIN_SECONDS", "after SIGTERM: /readyz 503, still serving", Settings.drain_seconds),
    ("SHUTDOWN_TIMEOUT_SECONDS", "then in-flight requests get", Settings.shutdown_timeout_seconds),
    (
        "RULES_WAIT_SECONDS",
        "a request before any rules waits, then 503",
        Settings.rules_wait_seconds,
    ),
    ("CHECKPOINT_POLL_SECONDS", "re-read the checkpoint (NFS)", Settings.checkpoint_poll_seconds),
    ("WATCHER", "auto, inotify or polling", Settings.watcher),
    ("MAX_QUERY_SONGS", "most distinct songs in one request", Settings.max_query_songs),
    ("MAX_BODY_BYTES", "larger request bodies get 413", Settings.max_body_bytes),
    ("MAX_CONNECTIONS", "most open connections; auto: descriptor limit - 64", "auto"),
    (
        "IDLE_TIMEOUT_SECONDS",
        "close a connection with no request after",
        Settings.idle_timeout_seconds,
    ),
    ("BODY_TIMEOUT_SECONDS", "a request body must arrive within", Settings.body_timeout_seconds),
    ("LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR or CRITICAL", Settings.log_level),
)
USAGE = "\n".join(
    [
        "usage: python -m http_api",
        "",
        "Serves song recommendations from the rules `python -m mining` writes into DATA_DIR,",
        "reloading new rules as they appear. Configured only through the environment",
        "(defaults in brackets):",
        *(f"  {name:<25} {meaning} [{default}]" for name, meaning, default in _VARIABLES),
        "Endpoints: POST /api/recommend, GET /api/songs, /healthz, /readyz, /metrics and /.",
        "Exit codes: 0 stopped gracefully, 2 bad configuration, 1 cannot listen or an actor",
        "keeps dying.",
    ]
)


def main(argv: list[str] | None = None) -> int:
    """Run the server; the exit status is 0 after a graceful stop."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if args:
        print(
            f"http_api: error: unexpected argument {args[0]!r}: the server is configured through "
            "environment variables (see python -m http_api --help)",
            file=sys.stderr,
        )
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"http_api: error: {exc}", file=sys.stderr)
        return 2
    problem = max_connections_problem(settings, descriptor_limit())
    if problem is not None:
        print(f"http_api: error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        listener = bind_listener(settings.host, settings.port)
    except OSError as exc:
        print(
            f"http_api: error: cannot listen on HOST={settings.host} PORT={settings.port}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}",
            file=sys.stderr,
        )
        return 1
    supervisor = Supervisor(settings, listener, app_factory=init_app)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        supervisor.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    status = supervisor.run()
    log.info("exiting with status %d", status)
    return status


if __name__ == "__main__":
    sys.exit(main())
