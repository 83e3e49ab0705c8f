"""``GET /api/openapi.json``: the API's OpenAPI 3.1 description (``http_api/openapi.json``).

The document ships inside the package (``pip install`` brings it; ``docs/openapi.json`` is a
link to it) and is read once when the app is built, so a broken install fails at start, not on
a request. The test suite validates every response it gets against it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from http_api.web import Route

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


def openapi_routes() -> list[Route]:
    """``GET /api/openapi.json``, answering the document as it is in the package."""
    body = OPENAPI_PATH.read_bytes()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type="application/json", headers={"Cache-Control": "no-cache"}
        )

    return [("GET", "/api/openapi.json", openapi)]
