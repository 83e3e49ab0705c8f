"""The aiohttp application: routes, JSON errors, metrics, and `Connection: close` when draining."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from http_api import handlers, metrics
from http_api.settings import Settings
from http_api.state import RulesGate
from http_api.web import setup_web_routes

log = logging.getLogger(__name__)


def setup_routes(app: web.Application) -> None:
    """Register the endpoints of the contract, then the web page and its autocomplete."""
    app.router.add_post("/api/recommend", handlers.recommend, name="recommend")
    app.router.add_get("/healthz", handlers.healthz, name="healthz")
    app.router.add_get("/readyz", handlers.readyz, name="readyz")
    app.router.add_get("/metrics", handlers.metrics_text, name="metrics")
    setup_web_routes(app, app[handlers.GATE])


def _error_for(request: web.Request, exc: web.HTTPException) -> web.Response:
    """The JSON twin of an aiohttp error (404, 405, 413, ...), keeping headers such as Allow."""
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return handlers.body_too_large(request.app[handlers.SETTINGS])
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


@web.middleware
async def json_errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Make every error JSON, count and time every request, close connections while draining."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_for(request, exc)
    except Exception:
        # A bug: answer in the contract's shape, and say so loudly in the log.
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = handlers.json_error(500, "internal server error")
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else metrics.UNMATCHED_ROUTE
    metrics.observe_request(route, response.status, time.perf_counter() - started)
    if request.app[handlers.GATE].draining:
        # Tell keep-alive clients (and load balancers) to reconnect, landing on another replica.
        response.force_close()
    return response


def init_app(gate: RulesGate, settings: Settings) -> web.Application:
    """Build the application the HttpFrontend actor runs, over ``gate`` and ``settings``."""
    app = web.Application(
        client_max_size=settings.max_body_bytes, middlewares=[json_errors_and_metrics]
    )
    app[handlers.GATE] = gate
    app[handlers.SETTINGS] = settings
    setup_routes(app)
    return app
