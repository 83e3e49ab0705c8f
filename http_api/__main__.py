"""``python -m http_api``: read the settings, bind the port, run the actors until SIGTERM."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from types import FrameType

from actors import Supervisor, bind_listener
from http_api.app import serving
from http_api.capacity import descriptor_limit, max_connections_problem
from http_api.metrics import REPORTER
from http_api.settings import Settings, SettingsError
from mining.logsetup import configure_logging, log_format_for_errors, report_error
from mining.version import version_line

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
    ("RANKING", "best (rule) or sum (of the rules' confidences)", Settings.ranking),
    ("RELOAD_PRIORITY", "reloads at idle or normal CPU priority", Settings.reload_priority),
    ("RELOAD_CPU_SHARE", "CPU share an idle reload gets on a busy core", Settings.reload_cpu_share),
    ("MAX_CONNECTIONS", "most open connections; auto: descriptor limit - 64", "auto"),
    (
        "IDLE_TIMEOUT_SECONDS",
        "close a connection with no request after",
        Settings.idle_timeout_seconds,
    ),
    ("BODY_TIMEOUT_SECONDS", "a request body must arrive within", Settings.body_timeout_seconds),
    ("LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR or CRITICAL", Settings.log_level),
    ("LOG_FORMAT", "text, or json: one JSON object per line", Settings.log_format),
    ("ACCESS_LOG", "1: log every answered request", int(Settings.access_log)),
)
USAGE = "\n".join(
    [
        "usage: python -m http_api [--help | --version]",
        "",
        "Serves song recommendations from the rules `python -m mining` writes into DATA_DIR,",
        "reloading new rules as they appear. Configured only through the environment",
        "(defaults in brackets):",
        *(f"  {name:<25} {meaning} [{default}]" for name, meaning, default in _VARIABLES),
        "Endpoints: POST /api/recommend, GET /api/songs, /api/openapi.json, /healthz, /readyz,",
        "/metrics and /.",
        "SIGTERM drains for DRAIN_SECONDS first; SIGINT (Ctrl-C) stops without a drain.",
        "Exit codes: 0 stopped gracefully, 2 bad configuration, 1 cannot listen or an actor",
        "keeps dying.",
    ]
)


# glibc's mallopt parameter for the size from which a block gets its own mapping. 1 MiB: the
# index's arrays of a large rule set are above it, a query's temporaries (an array over the
# songs, at most a few hundred KiB) below, so they keep being served from the heap.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20


def return_freed_memory_at_once() -> None:
    """Give every freed block of 1 MiB or more back to the kernel at once (glibc only).

    glibc raises its mmap threshold each time such a block is freed (up to 32 MiB), so once an
    index build has freed its large arrays, the next ones come from the heap, and the holes
    they leave stay resident: serving 954,516 rules, the server held 132 MiB after start and
    191 MiB after two reloads, against 89 and 98 MiB with the threshold set (which also turns
    the adjustment off). Elsewhere (musl, macOS) nothing happens.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the server; the exit status is 0 after a graceful stop."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if args == ["--version"]:
        print(version_line("http_api"))
        return 0
    if args:
        report_error(
            "http_api",
            f"unexpected argument {args[0]!r}: the server is configured through environment "
            "variables (see python -m http_api --help)",
            log_format_for_errors(os.environ),
        )
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        report_error("http_api", str(exc), log_format_for_errors(os.environ))
        return 2
    problem = max_connections_problem(settings, descriptor_limit())
    if problem is not None:
        report_error("http_api", problem, settings.log_format)
        return 2
    return_freed_memory_at_once()
    configure_logging(settings.log_format, settings.log_level)
    try:
        listener = bind_listener(settings.host, settings.port)
    except OSError as exc:
        report_error(
            "http_api",
            f"cannot listen on HOST={settings.host} PORT={settings.port}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}",
            settings.log_format,
        )
        return 1
    log.info("recommendations ranked by %s (RANKING)", settings.ranking)
    supervisor = Supervisor(settings.for_actors(), listener, serving(settings), reporter=REPORTER)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # SIGTERM (Kubernetes, podman stop) drains first, so a load balancer can take the pod
        # out; SIGINT is Ctrl-C at a terminal, where nothing balances load: stop at once (the
        # quick shutdown gunicorn also gives SIGINT). In-flight requests still finish.
        supervisor.request_stop(signal.Signals(signum).name, drain=signum != signal.SIGINT)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    status = supervisor.run()
    log.info("exiting with status %d", status)
    return status


if __name__ == "__main__":
    sys.exit(main())
