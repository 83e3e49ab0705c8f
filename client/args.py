"""The command line of ``python -m client``: its arguments, checked, and its exit statuses."""

from __future__ import annotations

import argparse
import enum
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from yarl import URL

from client.continuous import ContinuousOptions
from client.recommend import DEFAULT_TIMEOUT_SECONDS, Query, endpoint_for, endpoint_from_url
from client.record import CSV_HEADER
from mining.logsetup import JsonFormatter
from mining.version import version_line

PROG = "python -m client"
# The client's logger: usage errors are records when it logs JSON.
log = logging.getLogger("client")
# How each recommended song is indented, as in the original client.
SONG_INDENT = "    "
MAX_PORT = 65535
# HOST PORT SONG, when --url does not replace the first two.
MIN_WORDS = 3


class ExitCode(enum.IntEnum):
    """The process exit status; documented in --help."""

    OK = 0
    USAGE = 2
    CONNECTION = 3
    TIMEOUT = 4
    REJECTED = 5
    SERVER_ERROR = 6
    BAD_REPLY = 7
    FILE_ERROR = 8
    PLOT_UNAVAILABLE = 9
    # The shell's convention for a process ended by SIGINT (128 + 2).
    INTERRUPTED = 130


_EPILOG = f"""\
one-shot output:
  Recommendation server v{{version}} with model from {{model_date}}.
  Song recommendations:
  {SONG_INDENT}one song per line, indented by {len(SONG_INDENT)} spaces
  (--json prints the server's JSON reply instead, on one line).
  On stderr, "note: ..." lines when the server says query songs were not in
  its model, or that no rule matched them (every song is merely popular).

continuous output (-c), CSV with the original client's header:
  {",".join(CSV_HEADER)}
  time           when the request was sent: ISO 8601, UTC, milliseconds
                 (e.g. 2026-11-28T19:45:01.123+00:00)
  response_time  milliseconds with three decimals (microsecond precision),
                 the unit of the original client
  version, model_date
                 from the reply; both empty when the request failed
  Tick k is sent at start + k*INTERVAL. A request that outlasts the interval
  is followed at once by the latest due tick; the ticks in between are skipped
  (counted in the summary), never sent in a burst. Every request gets a row
  unless --changes-only. Each request opens a new connection, as the original
  one curl per request did. Failures, recoveries and changes are logged on
  stderr as they happen; Ctrl-C, SIGTERM, --count or --duration end the run
  with a summary on stderr: requests, failures and their reasons, the longest
  run of failures (the downtime) with its start and end, p50/p99/max latency
  of successful requests (nearest rank), the time each new version or
  model_date was first seen, the mixed span after it (replies alternating
  with an older value, as behind a load balancer during a rolling update:
  from the first new reply to the last old one, with the count of old
  replies; logged once when it starts, not at each flip), and skipped
  ticks. The exit status is 0 however many requests failed: failures are
  the measurement.

  plot FILE.csv [-o FILE.png]
                 draw a recorded CSV (needs the optional matplotlib extra);
                 `{PROG} plot --help` for details. To reach a host
                 literally named "plot", use --url.

environment:
  LOG_FORMAT     text (default) or json: what goes to stderr (errors, the events
                 and summary of -c, plot's summary) as one JSON object per line

exit status:
  0 success   2 usage error   3 cannot connect   4 timeout
  5 request rejected (4xx)    6 server error (5xx)
  7 bad reply (not the HTTP and JSON expected, or over 1 MiB)
  8 file cannot be read or written
  9 matplotlib missing (plot)   130 one-shot request interrupted (Ctrl-C)"""


@dataclass(frozen=True)
class RequestCommand:
    """A validated one-shot or continuous invocation."""

    query: Query
    as_json: bool
    continuous: ContinuousOptions | None
    output: Path | None


class _ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are a log record when the client logs JSON."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error and exit 2."""
        if not any(isinstance(handler.formatter, JsonFormatter) for handler in log.handlers):
            super().error(message)
        log.error("%s (see %s --help)", message, self.prog)
        sys.exit(ExitCode.USAGE)


def _positive(kind: Callable[[str], float], what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


def _request_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        usage=(
            f"{PROG} [options] HOST PORT SONG [SONG ...]\n"
            f"       {PROG} [options] --url URL SONG [SONG ...]\n"
            f"       {PROG} plot FILE.csv [-o FILE.png]"
        ),
        description="Ask the song recommendation server for recommendations, once or continuously.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "words",
        nargs="+",
        metavar="HOST PORT SONG",
        help="the server's host and port, then one or more song names (only songs with --url)",
    )
    parser.add_argument("--version", action="version", version=version_line("client"))
    parser.add_argument(
        "--url",
        help="the server's base URL (http:// or https://, /api/recommend is appended) "
        "or the endpoint's URL, instead of HOST PORT",
    )
    parser.add_argument(
        "--limit",
        type=_positive(int, "a positive integer"),
        metavar="N",
        help="how many songs to ask for (the server's default when omitted)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive(float, "a positive number of seconds"),
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"seconds allowed for each whole request (default {DEFAULT_TIMEOUT_SECONDS:g}: "
        "longer than the server's wait for its first rules, so its answer arrives)",
    )
    parser.add_argument(
        "--json", action="store_true", help="one-shot: print the server's JSON reply"
    )
    parser.add_argument(
        "-c",
        "--continuous",
        action="store_true",
        help="send one request per interval and print CSV rows (see below)",
    )
    continuous = parser.add_argument_group("continuous mode (-c) only")
    continuous.add_argument(
        "--interval",
        type=_positive(float, "a positive number of seconds"),
        metavar="SECONDS",
        help="seconds between request starts (default 1)",
    )
    continuous.add_argument(
        "--output", type=Path, metavar="FILE", help="write the CSV to FILE, not stdout"
    )
    continuous.add_argument(
        "--changes-only",
        action="store_true",
        help="like the original client, write only rows whose version or model_date differ "
        "from the previous request's or whose response time moved by more than 20 %%",
    )
    continuous.add_argument(
        "--duration",
        type=_positive(float, "a positive number of seconds"),
        metavar="SECONDS",
        help="stop after this many seconds",
    )
    continuous.add_argument(
        "--count",
        type=_positive(int, "a positive integer"),
        metavar="N",
        help="stop after this many requests",
    )
    return parser


def parse_request_command(args: Sequence[str]) -> RequestCommand:
    """Parse and validate a one-shot or continuous command line; exit 2 on a usage error."""
    parser = _request_parser()
    ns = parser.parse_intermixed_args(args)
    words: list[str] = ns.words
    if ns.url is not None:
        try:
            url = endpoint_from_url(ns.url)
        except ValueError as err:
            parser.error(f"--url: {err}")
        songs = words
    else:
        if len(words) < MIN_WORDS:
            parser.error("expected HOST PORT SONG [SONG ...] (or --url URL SONG [SONG ...])")
        host, port_text, *songs = words
        url = _endpoint(parser, host, port_text)
    query = Query(url=url, songs=tuple(songs), limit=ns.limit, timeout=ns.timeout)
    continuous_only = {
        "--interval": ns.interval is not None,
        "--output": ns.output is not None,
        "--changes-only": ns.changes_only,
        "--duration": ns.duration is not None,
        "--count": ns.count is not None,
    }
    if not ns.continuous:
        given = [name for name, present in continuous_only.items() if present]
        if given:
            parser.error(f"{', '.join(given)} only apply with -c/--continuous")
        return RequestCommand(query, ns.json, None, None)
    if ns.json:
        parser.error("--json applies to one-shot requests; continuous mode writes CSV")
    options = ContinuousOptions(
        interval=1.0 if ns.interval is None else ns.interval,
        count=ns.count,
        duration=ns.duration,
        changes_only=ns.changes_only,
    )
    return RequestCommand(query, False, options, ns.output)


def _endpoint(parser: argparse.ArgumentParser, host: str, port_text: str) -> URL:
    try:
        port = int(port_text)
    except ValueError:
        parser.error(f"PORT {port_text!r} is not a number")
    if not 1 <= port <= MAX_PORT:
        parser.error(f"PORT {port} is not between 1 and {MAX_PORT}")
    try:
        return endpoint_for(host, port)
    except ValueError as err:
        parser.error(f"HOST {host!r}: {err}")


def plot_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=f"{PROG} plot",
        description="Draw a CSV recorded with -c: response time over time, failures marked, "
        "the first reply with each new version or model_date as a labelled vertical line, "
        "the span where replies alternate between an old and a new value shaded orange, "
        "the longest failure run shaded red. Also prints the run's summary on stderr.",
        epilog="exit status: 0 success, 2 usage error, 8 file cannot be read or written "
        "or is not a client CSV, 9 matplotlib missing",
    )
    parser.add_argument("csv", type=Path, metavar="FILE.csv", help="a CSV written by -c")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE.png",
        help="where to write the PNG (default: the CSV's name with .png)",
    )
    parser.add_argument("--title", help="the plot's title (default: the CSV's file name)")
    return parser
