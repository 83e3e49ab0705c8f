"""The aiohttp application: routes, JSON errors, metrics, and `Connection: close` when draining.

Every route's handler is wrapped once, when the app is built, by :func:`_answered` (errors as
JSON, the request counted and timed under its route, the connection closed while draining);
each path also answers every other method with a JSON 405, and one catch-all route answers
every other path with a JSON 404. So every request meets the same wrapper without an aiohttp
middleware, which aiohttp runs through its middleware chain and a context manager per request
(a share of a request's CPU that benchmarks/serve_throughput.py shows), and the route label
is known in advance instead of read from the match info.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Handler

from actors.frontend import Serve
from actors.gate import RulesGate
from http_api import handlers, metrics
from http_api.accesslog import access_log_options
from http_api.connections import start_serving
from http_api.errors import body_too_large, json_error
from http_api.openapi import openapi_routes
from http_api.settings import Settings
from http_api.validation import quote
from http_api.web import Route, web_routes

log = logging.getLogger(__name__)

# Builds the application over a gate and the settings (init_app; tests wrap it in checks).
AppFactory = Callable[[RulesGate, Settings], web.Application]
# What aiohttp calls on a request with an Expect header before its handler; a response ends it.
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


def api_routes(gate: RulesGate, settings: Settings) -> list[Route]:
    """The endpoints of the contract."""
    api = handlers.ApiHandlers(gate, settings)
    return [
        ("POST", "/api/recommend", api.recommend),
        ("GET", "/healthz", api.healthz),
        ("GET", "/readyz", api.readyz),
        ("GET", "/metrics", api.metrics_text),
    ]


def add_routes(
    app: web.Application, routes: Iterable[Route], gate: RulesGate, settings: Settings
) -> None:
    """Register ``routes`` (GET ones answer HEAD too), a 405 for every other method on their
    paths and a 404 for every other path, each wrapped by :func:`_answered`."""
    by_path: dict[str, dict[str, Handler]] = {}
    for method, path, handler in routes:
        by_path.setdefault(path, {})[method] = handler
        if method == "GET":
            by_path[path]["HEAD"] = handler
    for path, methods in by_path.items():
        resource = app.router.add_resource(path)
        expect = _expect_handler(path, gate, settings)
        for method, handler in methods.items():
            resource.add_route(
                method,
                _answered(path, method, handler, gate, settings),
                expect_handler=expect,
            )
        refuse = _method_not_allowed(sorted(methods))
        resource.add_route(
            "*",
            _answered(path, metrics.ANY_METHOD, refuse, gate, settings),
            expect_handler=expect,
        )
    unmatched = _answered(metrics.UNMATCHED_ROUTE, metrics.ANY_METHOD, _not_found, gate, settings)
    app.router.add_route(
        "*",
        "/{path:.*}",
        unmatched,
        expect_handler=_expect_handler(metrics.UNMATCHED_ROUTE, gate, settings),
    )


def _method_not_allowed(allowed: list[str]) -> Handler:
    """A handler answering 405 with the ``Allow`` header for a path's other methods."""
    listed = ", ".join(allowed)

    async def method_not_allowed(request: web.Request) -> web.Response:
        return json_error(
            405,
            f"method {request.method} is not allowed here; use {listed}",
            headers={"Allow": listed},
        )

    return method_not_allowed


async def _not_found(request: web.Request) -> web.Response:
    """404 for a path no route has."""
    return json_error(
        404,
        "no such endpoint; the API is POST /api/recommend, described at GET /api/openapi.json "
        "(see GET / for the page)",
    )


def _error_for(exc: web.HTTPException, settings: Settings) -> web.Response:
    """The JSON twin of an aiohttp error raised in a handler (413, ...), keeping its headers."""
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return body_too_large(settings)
    headers = {
        name: value
        for name, value in exc.headers.items()
        if name.lower() not in ("content-type", "content-length")
    }
    return json_error(exc.status, exc.reason, headers=headers)


def _answered(
    route: str, method: str, handler: Handler, gate: RulesGate, settings: Settings
) -> Handler:
    """``handler`` (answering ``method``, or every method) with every error as JSON, the request
    counted and timed under ``route``, and ``Connection: close`` while draining."""

    observe = metrics.request_observer(route, method)

    async def answered(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < HTTPStatus.BAD_REQUEST:
                raise
            response = _error_for(exc, settings)
        except Exception:
            # A bug: answer in the contract's shape, and say so loudly in the log.
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = json_error(500, "internal server error")
        observe(request.method, response.status, time.perf_counter() - started)
        if gate.draining:
            # Tell keep-alive clients (and load balancers) to reconnect, landing on another
            # replica.
            response.force_close()
        return response

    return answered


def _expect_handler(route: str, gate: RulesGate, settings: Settings) -> ExpectHandler:
    """aiohttp's handling of ``Expect`` with the API's JSON errors, counted under ``route``:
    ``100 Continue`` only for a body the server would take (a declared body over the limit
    gets its 413 at once), 417 for any other expectation."""
    observe = metrics.request_observer(route, metrics.ANY_METHOD)

    async def expect(request: web.Request) -> web.StreamResponse | None:
        # HTTP/1.0 has no expectations (RFC 9110 10.1.1): as aiohttp, ignore them there.
        if request.version < HttpVersion11:
            return None
        expectation = request.headers.get("Expect", "")
        length = request.content_length
        if expectation.lower() != "100-continue":
            response = json_error(
                417, f"expectation {quote(expectation)} is not supported; only 100-continue"
            )
        elif length is not None and length > settings.max_body_bytes:
            response = body_too_large(settings)
        else:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            # As aiohttp does: the interim answer is not the response's start.
            request.writer.output_size = 0
            return None
        observe(request.method, response.status, 0.0)
        if gate.draining:
            response.force_close()
        return response

    return expect


def init_app(gate: RulesGate, settings: Settings) -> web.Application:
    """Build the application the HttpFrontend actor runs, over ``gate`` and ``settings``."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        # Bodies arrive as sent: the recommend handler inflates them itself and stops at the
        # body limit, where aiohttp would inflate all of a compressed body on the loop (after
        # answering 413, to discard it) and answer an encoding it cannot decode in text/plain.
        handler_args={"auto_decompress": False},
    )
    routes = [*api_routes(gate, settings), *web_routes(gate), *openapi_routes()]
    add_routes(app, routes, gate, settings)
    return app


def serving(settings: Settings, app_factory: AppFactory = init_app) -> Serve:
    """The HttpFrontend actor's ``serve``: ``app_factory``'s application on the socket it hands
    over, below it the connection cap, the timeouts and JSON for malformed requests."""

    async def serve(gate: RulesGate, listener: socket.socket) -> web.AppRunner:
        return await start_serving(
            app_factory(gate, settings),
            listener,
            settings,
            # Off unless ACCESS_LOG=1: requests are counted and timed in /metrics, and a log
            # line each costs more than the recommendation (docs/monitoring.md).
            **access_log_options(settings.access_log),
        )

    return serve
