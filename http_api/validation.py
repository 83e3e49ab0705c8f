"""Parse and validate a ``POST /api/recommend`` body: pure, no aiohttp, every mistake a 4xx.

Decisions (documented in docs/server.md):
- The body must be UTF-8 JSON; the ``Content-Type`` header is not checked, so clients that
  send ``text/plain`` or nothing keep working.
- Fields other than ``songs`` and ``limit`` are ignored (like the original server); a
  ``"limit": null`` means the default.
- Songs are deduplicated exactly, keeping the first occurrence; the cap applies to distinct
  songs. Unknown songs are not an error (the recommender ignores them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from mining import contentcoding
from mining.limits import DEFAULT_LIMIT, MAX_LIMIT, MAX_SONG_NAME_CHARS

# How much of a client's text an error message quotes.
MAX_QUOTE_CHARS = 60


class RecommendRequest(NamedTuple):
    """A valid request: distinct query songs in the order given, and how many to return."""

    songs: tuple[str, ...]
    limit: int


@dataclass(frozen=True)
class RequestError:
    """Why a request is refused: the HTTP status and a message for the client."""

    status: int
    message: str


def _bad(message: str) -> RequestError:
    return RequestError(400, message)


def parse_recommend_request(body: bytes, max_query_songs: int) -> RecommendRequest | RequestError:
    """Turn a raw request body into a RecommendRequest, or say exactly what is wrong with it.

    The usual request (an object of a few song names and perhaps a limit) is taken in one pass
    here; anything else is read again by :func:`parse_checked`, which gives the same request or
    words what is wrong: half the CPU of checking every request step by step
    (benchmarks/serve_throughput.py).
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return parse_checked(body, max_query_songs)
    if type(document) is dict:
        songs = document.get("songs")
        limit = document.get("limit", DEFAULT_LIMIT)
        # Exact types: a bool is no limit, and a float one (orjson's reading of an integer
        # past 64 bits) is for parse_checked.
        if type(songs) is list and songs and type(limit) is int and 1 <= limit <= MAX_LIMIT:
            for song in songs:
                if type(song) is not str or len(song) > MAX_SONG_NAME_CHARS:
                    break
            else:
                distinct = tuple(dict.fromkeys(songs))
                if len(distinct) <= max_query_songs:
                    return RecommendRequest(distinct, limit)
    return parse_checked(body, max_query_songs)


def parse_checked(body: bytes, max_query_songs: int) -> RecommendRequest | RequestError:
    """:func:`parse_recommend_request` checked step by step: the request, or what is wrong with
    it in words."""
    decoded = _decode(body)
    if isinstance(decoded, RequestError):
        return decoded
    document = decoded.value
    if not isinstance(document, dict):
        return _bad(f'body must be a JSON object like {{"songs": [...]}}, not {_kind(document)}')
    if "songs" not in document:
        return _bad('"songs" is missing: send {"songs": ["song name", ...]}')
    songs = document["songs"]
    if not isinstance(songs, list):
        return _bad(f'"songs" must be a list of song names, not {_kind(songs)}')
    if not songs:
        return _bad('"songs" is empty: send at least one song name')
    for index, song in enumerate(songs):
        if not isinstance(song, str):
            return _bad(f'"songs"[{index}] must be a string, not {_kind(song)}')
        if len(song) > MAX_SONG_NAME_CHARS:
            return _bad(
                f'"songs"[{index}] is {len(song)} characters long; '
                f"the maximum is {MAX_SONG_NAME_CHARS}"
            )
    distinct = tuple(dict.fromkeys(songs))
    if len(distinct) > max_query_songs:
        return _bad(f'"songs" has {len(distinct)} distinct songs; the maximum is {max_query_songs}')
    limit = document.get("limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    elif isinstance(limit, bool) or not isinstance(limit, int):
        return _bad(f'"limit" must be an integer from 1 to {MAX_LIMIT}, not {_kind(limit)}')
    elif not 1 <= limit <= MAX_LIMIT:
        return _bad(f'"limit" must be from 1 to {MAX_LIMIT}')
    return RecommendRequest(songs=distinct, limit=limit)


class _Decoded(NamedTuple):
    """A body's JSON value."""

    value: object


def _decode(body: bytes) -> _Decoded | RequestError:
    """The body's JSON value as ``json.loads`` reads it, as far as a request can tell, or what
    is wrong with it.

    orjson reads UTF-8 and JSON in one C pass, cheaper than the stdlib
    (benchmarks/serve_throughput.py). It refuses a little JSON the stdlib takes (NaN,
    escaped lone surrogates) and words its errors its own way, so when it refuses, the stdlib
    decides, and explains. It also reads an integer past 64 bits as a float: the one place a
    request tells integers from floats is ``limit``, so a float there is read again by the
    stdlib.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _decode_with_stdlib(body)
    if isinstance(document, dict) and isinstance(document.get("limit"), float):
        return _decode_with_stdlib(body)
    return _Decoded(document)


def _decode_with_stdlib(body: bytes) -> _Decoded | RequestError:
    """The body's JSON value as ``json.loads`` reads it, or what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _bad(f"body is not valid UTF-8 (byte {exc.start})")
    try:
        return _Decoded(json.loads(text))
    except json.JSONDecodeError as exc:
        # json words some errors to end in "at" ("Invalid control character at").
        reason = exc.msg.removesuffix(" at")
        return _bad(f"body is not valid JSON: {reason} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return _bad("body is not valid JSON: nested too deeply")
    except ValueError as exc:
        # e.g. an integer literal longer than Python's int-parsing limit.
        return _bad(f"body is not valid JSON: {exc}")


def decode_content(body: bytes, content_encoding: str, limit: int) -> bytes | RequestError:
    """``body`` with its ``Content-Encoding`` undone, or what is wrong with it: 415 for a coding
    this server does not decode, 413 once more than ``limit`` bytes come out (inflating stops
    there), 400 for data that is not what its coding says."""
    try:
        return contentcoding.decode_content(body, content_encoding, limit)
    except contentcoding.UnsupportedCodingError as exc:
        if "," in exc.coding:
            return RequestError(415, str(exc))
        return RequestError(
            415,
            f"Content-Encoding {quote(exc.coding)} is not supported; "
            f"send {', '.join(contentcoding.CONTENT_CODINGS)}",
        )
    except contentcoding.InflatedTooLargeError:
        return RequestError(413, f"request body is larger than {limit} bytes")
    except contentcoding.ContentCodingError as exc:
        return _bad(f"body is {exc}")


def quote(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """``text`` quoted for an error message: one line, control and other unprintable
    characters escaped (``repr``), at most ``limit`` characters between the quotes."""
    quoted = repr(" ".join(text.split()))
    if len(quoted) > limit + 2:
        quoted = quoted[: limit - 2] + "..." + quoted[0]
    return quoted


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
