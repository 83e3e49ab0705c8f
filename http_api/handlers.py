"""Request handlers: they read ``gate.snapshot`` and compute inline, never touching pykka."""

from __future__ import annotations

import asyncio
import math
from http import HTTPStatus

from aiohttp import StreamReader, web

from actors.gate import RulesGate
from http_api import metrics
from http_api.errors import body_too_large, json_error
from http_api.settings import Settings
from http_api.validation import RequestError, decode_content, parse_recommend_request, quote
from mining.contentcoding import CONTENT_CODINGS


async def body_timed_out(request: web.Request, settings: Settings) -> web.Response:
    """408 for a body still incomplete ``body_timeout_seconds`` after its head, sent at once,
    and the connection closed: nothing is coming, so no point in aiohttp's lingering read of the
    rest of the body (up to 10 s) that follows any other early answer."""
    response = json_error(
        408, f"the request body did not arrive within {settings.body_timeout_seconds:g} s"
    )
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


def refused(error: RequestError, settings: Settings) -> web.Response:
    """The answer to a request validation refused."""
    if error.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        return body_too_large(settings)
    if error.status == HTTPStatus.UNSUPPORTED_MEDIA_TYPE:
        # RFC 7694: say which codings would do.
        headers = {"Accept-Encoding": ", ".join(CONTENT_CODINGS)}
        return json_error(error.status, error.message, headers=headers)
    return json_error(error.status, error.message)


# A body this small never made aiohttp pause reading its connection (a request body's reader
# pauses it past twice its 64 KiB limit), so taking it straight from the reader's buffer leaves
# the connection as it was.
SMALL_BODY_BYTES = 16 * 1024


def buffered_body(payload: StreamReader) -> bytes | None:
    """The whole body when it arrived as one small chunk (a small POST, the usual case), taken
    from aiohttp's buffer as it is, else None.

    ``read_nowait()`` would take it too, but then asks the connection to resume reading, which
    runs the HTTP parser over nothing once per request: a cost benchmarks/serve_throughput.py
    shows. aiohttp discards the reader after the handler, so its buffer needs no consuming.
    tests/http_api/test_handlers.py holds this to the aiohttp version in use.
    """
    buffer = getattr(payload, "_buffer", None)
    if payload.is_eof() and buffer is not None and len(buffer) == 1:
        body = buffer[0]
        if type(body) is bytes and len(body) <= SMALL_BODY_BYTES and not payload._buffer_offset:
            return body
    return None


class ApiHandlers:
    """The contract's endpoints, bound to one app's gate and settings.

    Bound at start instead of looked up through ``request.app`` in every request: two fewer
    property-and-mapping lookups on the hot path.
    """

    def __init__(self, gate: RulesGate, settings: Settings) -> None:
        self._gate = gate
        self._settings = settings

    async def recommend(self, request: web.Request) -> web.Response:
        """``POST /api/recommend``: songs to add to a playlist holding the given songs."""
        settings = self._settings
        payload = request.content
        try:
            body = buffered_body(payload)
            if body is None and payload.is_eof():
                # In whole, but not one small chunk: its size is checked, for a chunked body
                # too, which has no Content-Length.
                body = payload.read_nowait()
            elif body is None:
                length = request.content_length
                if length is not None and length > settings.max_body_bytes:
                    return body_too_large(settings)
                # aiohttp stops reading at client_max_size (= max_body_bytes) when chunked.
                async with asyncio.timeout(settings.body_timeout_seconds):
                    body = await request.read()
            if len(body) > settings.max_body_bytes:
                return body_too_large(settings)
        except web.HTTPRequestEntityTooLarge:
            return body_too_large(settings)
        except TimeoutError:
            return await body_timed_out(request, settings)
        except (web.RequestPayloadError, ConnectionError) as exc:
            return json_error(400, f"request body could not be read: {quote(str(exc), 120)}")
        # Bodies arrive as sent (the app turns aiohttp's decompression off): inflated here,
        # only up to the body limit.
        content_encoding = request.headers.get("Content-Encoding")
        if content_encoding is not None:
            decoded = decode_content(body, content_encoding, settings.max_body_bytes)
            if isinstance(decoded, RequestError):
                return refused(decoded, settings)
            body = decoded
        parsed = parse_recommend_request(body, settings.max_query_songs)
        if isinstance(parsed, RequestError):
            return refused(parsed, settings)
        snapshot = self._gate.snapshot
        if snapshot is None:
            snapshot = await self._gate.wait_for_snapshot(settings.rules_wait_seconds)
            if snapshot is None:
                retry_after = max(1, math.ceil(settings.rules_wait_seconds))
                return json_error(
                    503,
                    f"no rules loaded yet (waited {settings.rules_wait_seconds:g} s); retry later",
                    headers={"Retry-After": str(retry_after)},
                )
        body = snapshot.answer_json(parsed.songs, parsed.limit, settings.ranking)
        return web.Response(body=body, content_type="application/json")

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: the event loop answers (never depends on the rules)."""
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """``GET /readyz``: 200 when rules are loaded and the server is not draining, else 503."""
        snapshot = self._gate.snapshot
        if self._gate.draining:
            return web.json_response({"ready": False, "reason": "draining"}, status=503)
        if snapshot is None:
            return web.json_response({"ready": False, "reason": "no rules loaded yet"}, status=503)
        return web.json_response(
            {
                "ready": True,
                "model_date": snapshot.model_date,
                "rules": snapshot.header.rule_count,
                "songs": snapshot.header.song_count,
            }
        )

    async def metrics_text(self, request: web.Request) -> web.Response:
        """``GET /metrics``: Prometheus text exposition."""
        metrics.show_snapshot(self._gate.snapshot, draining=self._gate.draining)
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})
