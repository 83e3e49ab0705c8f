"""Logging of every entry point (the job, the server, the client): text or JSON lines on stderr.

``LOG_FORMAT=text`` (the default) keeps the human format; ``LOG_FORMAT=json`` writes one JSON
object per line, for log stacks: ``time`` (RFC 3339, UTC, microseconds), ``level``, ``logger``,
``message``, ``exception`` (the whole traceback as one string) when there is one, and the
record's extra fields (the server's access log gives ``method``, ``path``, ``status``...).

It lives in ``mining`` because that package is the one the server and the client already import
from (the rules format, the version) and this module needs only the standard library, so
importing it pulls in neither pandas nor aiohttp.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TextIO

from mining.envsettings import choose

LOG_FORMATS = ("text", "json")
DEFAULT_LOG_FORMAT = "text"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came from ``extra=`` and is written out.
_RECORD_ATTRIBUTES = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"]
)


def parse_log_format(raw: str | None) -> str:
    """The LOG_FORMAT value (empty or unset: text); SettingsError (a ValueError) otherwise."""
    return choose("LOG_FORMAT", raw, LOG_FORMATS, DEFAULT_LOG_FORMAT)


def log_format_for_errors(env: Mapping[str, str]) -> str:
    """The format to report a start-up error in: LOG_FORMAT if it is valid, else text."""
    try:
        return parse_log_format(env.get("LOG_FORMAT"))
    except ValueError:
        return DEFAULT_LOG_FORMAT


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the text are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object: time, level, logger, message, exception, extras."""
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="microseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        # ASCII only: U+2028 and friends stay escaped, so no line reader ever splits an entry.
        return json.dumps(entry, default=str)


def configure_logging(
    log_format: str,
    level: str | int = logging.INFO,
    *,
    text_formatter: logging.Formatter | None = None,
    stream: TextIO | None = None,
    logger: str = "",
) -> None:
    """Send the records of ``logger`` (default: the root, so every logger) to ``stream``
    (stderr) in ``log_format``, from ``level`` on, replacing the handlers it had.

    For the root logger, warnings become records too, and in JSON so do uncaught exceptions (in
    the main thread or any other), so nothing reaches stderr as bare text. A named ``logger``
    (the client, whose ``main`` also runs inside other programs) stops propagating instead and
    leaves the process-wide hooks alone.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(text_formatter or logging.Formatter(TEXT_FORMAT))
    target = logging.getLogger(logger)
    for old in target.handlers[:]:
        target.removeHandler(old)
        old.close()
    target.addHandler(handler)
    target.setLevel(level)
    if logger:
        target.propagate = False
        return
    logging.captureWarnings(True)
    if log_format == "json":
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def report_error(program: str, message: str, log_format: str) -> None:
    """A fatal error as one line on stderr: ``PROGRAM: error: MESSAGE`` in text, or an ERROR
    record of the logger ``program`` in JSON (whatever the log level)."""
    if log_format == "json":
        record = logging.LogRecord(program, logging.ERROR, "", 0, message, None, None)
        line = JsonFormatter().format(record)
    else:
        line = f"{program}: error: {message}"
    print(line, file=sys.stderr, flush=True)


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    logging.getLogger().critical("uncaught exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger().critical(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
