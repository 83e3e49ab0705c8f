"""One `POST /api/recommend` over aiohttp, with every failure turned into one clear line."""

from __future__ import annotations

import asyncio
import enum
import json
import os
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import aiohttp
from yarl import URL

from mining.contentcoding import (
    CONTENT_CODINGS,
    ContentCodingError,
    InflatedTooLargeError,
    UnsupportedCodingError,
    decode_content,
)

ENDPOINT_PATH = "/api/recommend"
# How much of a non-JSON body to quote in an error line.
_QUOTE_CHARS = 80
# The longest reply read, as sent and once inflated: a full answer of 100 songs with long names
# is well under it, a runaway or hostile one stops there.
MAX_REPLY_BYTES = 1 << 20
# Longer than the server's RULES_WAIT_SECONDS default (5 s), so that its own 503 "no rules
# loaded yet" reaches the user instead of a timeout.
DEFAULT_TIMEOUT_SECONDS = 10.0
# Characters never printed as they are: C0 and C1 controls (ANSI escape sequences start with
# ESC or CSI) and the bidirectional overrides that make a line read other than it is.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class FailureKind(enum.Enum):
    """Why a request failed; each kind has its own exit code in one-shot mode."""

    CONNECTION = "connection"
    TIMEOUT = "timeout"
    REJECTED = "rejected"  # 4xx: the request was wrong
    SERVER_ERROR = "server error"  # 5xx
    BAD_REPLY = "bad reply"  # not the HTTP and JSON the contract promises


class RequestError(Exception):
    """A request that produced no recommendation; `str()` is the one-line reason."""

    def __init__(self, kind: FailureKind, message: str, response_time_ms: float) -> None:
        super().__init__(printable(" ".join(message.split())))
        self.kind = kind
        self.response_time_ms = response_time_ms


@dataclass(frozen=True)
class Query:
    """What to ask and where: the same for every request of a run."""

    url: URL
    songs: tuple[str, ...]
    limit: int | None
    timeout: float


@dataclass(frozen=True)
class Recommendation:
    """A successful reply."""

    songs: tuple[str, ...]
    version: str
    model_date: str
    response_time_ms: float
    # The decoded reply as the server sent it, extra fields included (for --json).
    reply: dict[str, Any]
    # How many of `songs`, from the start, came from rules (None: the server does not say).
    from_rules: int | None = None
    # Query songs the server's model does not know (at most the first 20 it reports).
    unknown: tuple[str, ...] = ()


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control and bidirectional-override characters
    escaped (``\\x1b``, ``\\u202e``), everything else as it is."""
    return _UNPRINTABLE.sub(_escape, text)


# The largest code point a two-digit \x escape shows.
_MAX_BYTE = 0xFF


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= _MAX_BYTE else f"\\u{code:04x}"


def reply_as_json(reply: dict[str, Any]) -> str:
    """A reply as one line of JSON that is safe to print (what ``--json`` shows)."""
    # json.dumps escapes C0 controls; the others are escaped the same way (\\uXXXX), which is
    # valid JSON because they can only occur inside strings.
    text = json.dumps(reply, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def endpoint_for(host: str, port: int) -> URL:
    """The recommend endpoint of a server given as HOST PORT (IPv6 literals included)."""
    return URL.build(scheme="http", host=host.strip("[]"), port=port, path=ENDPOINT_PATH)


def endpoint_from_url(text: str) -> URL:
    """The recommend endpoint for --url: a base URL, or the endpoint itself."""
    url = URL(text)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    if url.path.rstrip("/").endswith(ENDPOINT_PATH):
        return url
    # A base URL may carry a path prefix (a reverse proxy); keep it.
    return url.with_path(url.path.rstrip("/") + ENDPOINT_PATH)


def new_session() -> aiohttp.ClientSession:
    """A session that opens a new connection per request, and leaves replies compressed.

    Like the original client's one curl per request, every request then goes
    through connection setup and load-balancer routing the way a new user's
    does, and a server being replaced is seen at once rather than through a
    stale keep-alive connection. Replies are inflated by :func:`recommend`, up
    to MAX_REPLY_BYTES.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        auto_decompress=False,
        headers={"Accept-Encoding": ", ".join(CONTENT_CODINGS)},
    )


async def recommend(session: aiohttp.ClientSession, query: Query) -> Recommendation:
    """Ask for recommendations; raise RequestError with the reason on any failure."""
    url, timeout = query.url, query.timeout
    payload: dict[str, Any] = {"songs": list(query.songs)}
    if query.limit is not None:
        payload["limit"] = query.limit
    started = time.perf_counter()

    def elapsed_ms() -> float:
        return (time.perf_counter() - started) * 1000

    def failure(kind: FailureKind, message: str) -> RequestError:
        return RequestError(kind, message, elapsed_ms())

    origin = _origin(url)
    try:
        # asyncio.timeout bounds the whole exchange: connect, send, and the body.
        async with (
            asyncio.timeout(timeout),
            session.post(url, json=payload, allow_redirects=False) as response,
        ):
            raw = await _read_bounded(response, MAX_REPLY_BYTES)
            body = decode_content(
                raw, response.headers.get("Content-Encoding", ""), MAX_REPLY_BYTES
            )
    except (_ReplyTooLargeError, InflatedTooLargeError):
        message = f"reply from {origin} is larger than {MAX_REPLY_BYTES} bytes: not read further"
        raise failure(FailureKind.BAD_REPLY, message) from None
    except UnsupportedCodingError as err:
        message = (
            f"reply from {origin} has a Content-Encoding the client does not decode "
            f"({err.coding[:40]!r}; it asks for {', '.join(CONTENT_CODINGS)})"
        )
        raise failure(FailureKind.BAD_REPLY, message) from None
    except ContentCodingError as err:
        raise failure(FailureKind.BAD_REPLY, f"reply from {origin} is {err}") from None
    except TimeoutError:
        message = f"no reply from {origin} within {timeout:g} s"
        raise failure(FailureKind.TIMEOUT, message) from None
    except aiohttp.ClientConnectorError as err:
        message = f"cannot connect to {origin}: {_os_reason(err.os_error)}"
        raise failure(FailureKind.CONNECTION, message) from None
    except aiohttp.ClientResponseError as err:
        # The reply's status line or headers could not be parsed.
        message = f"reply from {origin} is not valid HTTP: {_parser_words(err.message)}"
        raise failure(FailureKind.BAD_REPLY, message) from None
    except aiohttp.ClientError as err:
        # ServerDisconnectedError, ClientPayloadError, ...: the connection broke mid-way.
        message = f"connection to {origin} failed: {err.__class__.__name__}: {err}"
        raise failure(FailureKind.CONNECTION, message) from None
    response_time_ms = elapsed_ms()
    return _interpret(response, body, response_time_ms)


class _ReplyTooLargeError(Exception):
    """The reply goes on past the size the client reads."""


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The reply's body as sent, read piece by piece up to ``limit`` bytes."""
    if response.content_length is not None and response.content_length > limit:
        raise _ReplyTooLargeError
    pieces, size = [], 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            raise _ReplyTooLargeError
        pieces.append(piece)
    return b"".join(pieces)


def _parser_words(message: str) -> str:
    """aiohttp's parser error ("Title:\\n  Detail:\\n\\n  b'<bytes>'\\n    ^") as one line."""
    words, _, rest = message.partition("\n\n")
    line = ": ".join(part.strip().rstrip(":") for part in words.splitlines() if part.strip())
    excerpt = rest.strip().splitlines()[0] if rest.strip() else ""
    if len(excerpt) > _QUOTE_CHARS:
        excerpt = excerpt[:_QUOTE_CHARS] + "..."
    return f"{line} ({excerpt})" if excerpt else line


def _os_reason(error: OSError) -> str:
    # asyncio's connect failure says "Connect call failed (address)" and keeps
    # the errno apart, so name the errno the way the system does ("Connection
    # refused"); resolver errors have negative codes and a useful message.
    if error.errno is not None and error.errno > 0:
        return os.strerror(error.errno)
    return error.strerror or str(error)


def _origin(url: URL) -> str:
    return str(url.origin())


def _interpret(
    response: aiohttp.ClientResponse, body: bytes, response_time_ms: float
) -> Recommendation:
    status = response.status
    status_text = f"{status} {_reason(status)}"
    decoded = _decode(body)
    if HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR:
        raise RequestError(
            FailureKind.REJECTED,
            f"server rejected the request ({status_text}): {_error_text(decoded, body)}",
            response_time_ms,
        )
    if HTTPStatus.INTERNAL_SERVER_ERROR <= status <= _LAST_STATUS:
        message = f"server error ({status_text}): {_error_text(decoded, body)}"
        retry_after = response.headers.get("Retry-After")
        if retry_after:
            message += f" (retry after {retry_after} s)"
        raise RequestError(FailureKind.SERVER_ERROR, message, response_time_ms)
    if status > _LAST_STATUS:
        raise RequestError(
            FailureKind.BAD_REPLY, f"reply status {status} is not an HTTP status", response_time_ms
        )
    if status != HTTPStatus.OK:
        raise RequestError(
            FailureKind.BAD_REPLY, f"unexpected reply status {status_text}", response_time_ms
        )
    if not isinstance(decoded, dict):
        raise RequestError(
            FailureKind.BAD_REPLY,
            f"reply is not a JSON object ({_content_type(response)}): {_quote(body)}",
            response_time_ms,
        )
    songs = decoded.get("songs")
    if not isinstance(songs, list) or not all(isinstance(song, str) for song in songs):
        raise RequestError(
            FailureKind.BAD_REPLY, "reply has no list of song names in 'songs'", response_time_ms
        )
    version = _text_field(decoded, "version", response_time_ms)
    model_date = _text_field(decoded, "model_date", response_time_ms)
    # Added to the contract later: a server may send neither.
    from_rules = decoded.get("from_rules")
    if from_rules is not None and (
        isinstance(from_rules, bool)
        or not isinstance(from_rules, int)
        or not 0 <= from_rules <= len(songs)
    ):
        raise RequestError(
            FailureKind.BAD_REPLY,
            f"reply's 'from_rules' is not a count of its {len(songs)} songs",
            response_time_ms,
        )
    unknown = decoded.get("unknown", [])
    if not isinstance(unknown, list) or not all(isinstance(song, str) for song in unknown):
        raise RequestError(
            FailureKind.BAD_REPLY, "reply's 'unknown' is not a list of song names", response_time_ms
        )
    return Recommendation(
        tuple(printable(song) for song in songs),
        version,
        model_date,
        response_time_ms,
        decoded,
        from_rules,
        tuple(printable(song) for song in unknown),
    )


def _text_field(reply: dict[str, Any], name: str, response_time_ms: float) -> str:
    value = reply.get(name)
    if not isinstance(value, str) or not value:
        raise RequestError(
            FailureKind.BAD_REPLY, f"reply has no text in {name!r}", response_time_ms
        )
    return printable(value)


# Status codes are three digits, 1xx to 5xx (RFC 9110 15); anything above is not HTTP.
_LAST_STATUS = 599


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"


def _decode(body: bytes) -> Any:
    """The JSON value of a body, or None when it is not JSON (or nested too deeply to read)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _error_text(decoded: Any, body: bytes) -> str:
    """The server's `{"error": ...}` message, or a quote of whatever it sent instead."""
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
        return str(decoded["error"])
    return _quote(body) if body else "empty body"


def _content_type(response: aiohttp.ClientResponse) -> str:
    return response.headers.get("Content-Type", "no content type")


def _quote(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    if len(text) > _QUOTE_CHARS:
        text = text[:_QUOTE_CHARS] + "..."
    return repr(text)
