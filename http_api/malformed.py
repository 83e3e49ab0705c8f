"""Requests aiohttp's parser refuses, and request targets that are not paths: answered with the
API's JSON error, counted in ``/metrics`` under the route ``malformed``, and logged in one line,
once per cause and client (http_api/connections.py installs both)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from http_api import metrics
from http_api.errors import json_error
from http_api.validation import quote

# The connection layer's one logger (http_api/connections.py, capacity.py and this module).
log = logging.getLogger("http_api.connections")

# Malformed requests are logged once per client and cause; this many pairs are remembered.
MAX_LOGGED_MALFORMED = 4096
# How much of a cause aiohttp words from the client's bytes is kept.
MAX_CAUSE_CHARS = 120


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


def paths_only(
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
