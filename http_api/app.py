"""The aiohttp application: routes, JSON errors, metrics, and `Connection: close` when draining."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from http_api import handlers, metrics
from http_api.settings import Settings
from http_api.state import RulesGate
from http_api.web import setup_web_routes

log = logging.getLogger(__name__)


def setup_routes(app: web.Application, gate: RulesGate, settings: Settings) -> None:
    """Register the endpoints of the contract, then the web page and its autocomplete."""
    api = handlers.ApiHandlers(gate, settings)
    app.router.add_post("/api/recommend", api.recommend, name="recommend")
    app.router.add_get("/healthz", api.healthz, name="healthz")
    app.router.add_get("/readyz", api.readyz, name="readyz")
    app.router.add_get("/metrics", api.metrics_text, name="metrics")
    setup_web_routes(app, gate)


def _error_for(request: web.Request, exc: web.HTTPException, settings: Settings) -> web.Response:
    """The JSON twin of an aiohttp error (404, 405, 413, ...), keeping headers such as Allow."""
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return handlers.body_too_large(settings)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"method {request.method} is not allowed here; use {allowed}"
    elif isinstance(exc, web.HTTPNotFound):
        message = "no such endpoint; the API is POST /api/recommend (see GET / for the page)"
    else:
        message = exc.reason
    headers = {
        name: value
        for name, value in exc.headers.items()
        if name.lower() not in ("content-type", "content-length")
    }
    return handlers.json_error(exc.status, message, headers=headers)


def json_errors_and_metrics(gate: RulesGate, settings: Settings) -> Middleware:
    """The middleware that makes every error JSON, counts and times every request, and closes
    connections while draining."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error_for(request, exc, settings)
        except Exception:
            # A bug: answer in the contract's shape, and say so loudly in the log.
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = handlers.json_error(500, "internal server error")
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else metrics.UNMATCHED_ROUTE
        metrics.observe_request(route, response.status, time.perf_counter() - started)
        if gate.draining:
            # Tell keep-alive clients (and load balancers) to reconnect, landing on another
            # replica.
            response.force_close()
        return response

    return middleware


def init_app(gate: RulesGate, settings: Settings) -> web.Application:
    """Build the application the HttpFrontend actor runs, over ``gate`` and ``settings``."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[json_errors_and_metrics(gate, settings)],
    )
    setup_routes(app, gate, settings)
    return app
