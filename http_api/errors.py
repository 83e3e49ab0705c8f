"""The one shape of every error the server answers: ``{"error": message}`` with its status."""

from __future__ import annotations

from aiohttp import web

from http_api.settings import Settings


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The one shape of every error: ``{"error": message}`` with its status."""
    return web.json_response({"error": message}, status=status, headers=headers)


def body_too_large(settings: Settings) -> web.Response:
    """413 for a body over ``max_body_bytes``, then the connection closes.

    aiohttp first discards what is left of the body (for at most its lingering time), so the
    client reads this answer instead of a connection reset.
    """
    response = json_error(413, f"request body is larger than {settings.max_body_bytes} bytes")
    response.force_close()
    return response
