"""The page at ``/`` (static files, no build step) and ``GET /api/songs``, its autocomplete."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from actors.gate import RulesGate
from http_api.errors import json_error
from mining.version import __version__

STATIC_DIR = Path(__file__).parent / "static"
MAX_QUERY_CHARS = 200
DEFAULT_SONGS_LIMIT = 10
MAX_SONGS_LIMIT = 50
# Autocomplete answers 503 at once instead of waiting for the first rules: a keystroke
# should never hold a connection open, and the page retries with backoff anyway.
NOT_READY_RETRY_AFTER_SECONDS = 1

# The page's file types, named here rather than by the system's MIME table (which varies).
_CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

# A route: method, path, handler.
Route = tuple[str, str, Handler]

# Everything the page needs comes from this server; nothing inline, nothing from elsewhere.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate on every load so a new release's page is picked up at once.
    "Cache-Control": "no-cache",
}


class _BadParameterError(ValueError):
    """A query parameter the client got wrong (the message is shown to the client)."""


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise _BadParameterError(f"{name} is given {len(values)} times; give it once")
    return values[0] if values else None


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_SONGS_LIMIT
    # str.isdigit alone would accept non-ASCII digits such as "٥" that int() also takes.
    if not (raw.isascii() and raw.isdigit()):
        raise _BadParameterError(f"limit must be a whole number from 1 to {MAX_SONGS_LIMIT}")
    # Checked before int(), which refuses over 4,300 digits (a ValueError, not our message).
    if len(raw.lstrip("0")) > len(str(MAX_SONGS_LIMIT)):
        raise _BadParameterError(f"limit must be from 1 to {MAX_SONGS_LIMIT}")
    limit = int(raw)
    if not 1 <= limit <= MAX_SONGS_LIMIT:
        raise _BadParameterError(f"limit must be from 1 to {MAX_SONGS_LIMIT}, not {limit}")
    return limit


def _parse_query(raw: str | None) -> str:
    query = raw or ""
    if len(query) > MAX_QUERY_CHARS:
        raise _BadParameterError(
            f"q must be at most {MAX_QUERY_CHARS} characters, not {len(query)}"
        )
    return query


class _WebHandlers:
    """The page's handlers, bound to the gate that holds the current snapshot."""

    def __init__(self, gate: RulesGate) -> None:
        self._gate = gate

    async def songs(self, request: web.Request) -> web.Response:
        """Known song names matching ``q`` (prefix matches first, then the most popular)."""
        try:
            query = _parse_query(_single(request, "q"))
            limit = _parse_limit(_single(request, "limit"))
        except _BadParameterError as exc:
            return json_error(400, str(exc))
        snapshot = self._gate.snapshot
        if snapshot is None:
            return json_error(
                503,
                "no rules loaded yet; try again shortly",
                headers={"Retry-After": str(NOT_READY_RETRY_AFTER_SECONDS)},
            )
        return web.json_response(
            {
                "songs": snapshot.recommender.search(query, limit),
                "version": __version__,
                "model_date": snapshot.model_date,
            }
        )


def web_routes(gate: RulesGate) -> list[Route]:
    """``GET /``, ``GET /api/songs`` and each of the page's files under ``/static/``."""
    handlers = _WebHandlers(gate)
    return [
        ("GET", "/", _static_file(STATIC_DIR / "index.html", _PAGE_HEADERS)),
        ("GET", "/api/songs", handlers.songs),
        *(
            ("GET", f"/static/{path.name}", _static_file(path))
            for path in sorted(STATIC_DIR.iterdir())
            if path.is_file()
        ),
    ]


def _static_file(path: Path, headers: dict[str, str] | None = None) -> Handler:
    """A handler serving one of the page's files (a route per file: nothing else is reachable).

    The files are a few KiB, read once: every answer is the whole file with its ETag, or 304 to
    a request that has it already. A Range header is ignored (RFC 9110 14.2 allows it), where
    aiohttp's FileResponse would answer an unsatisfiable range with an empty 416 of its own.
    """
    body = path.read_bytes()
    etag = hashlib.sha256(body).hexdigest()[:20]
    content_type = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    all_headers = {"Cache-Control": "no-cache", **(headers or {}), "ETag": f'"{etag}"'}

    async def static_file(request: web.Request) -> web.Response:
        known = request.if_none_match
        if known is not None and any(tag.value in (etag, "*") for tag in known):
            return web.Response(status=304, headers=all_headers)
        return web.Response(
            body=body, content_type=content_type, charset="utf-8", headers=all_headers
        )

    return static_file
