"""How the recommend handler takes a body: straight from aiohttp's buffer when it arrived as one
small chunk, the public way otherwise, with the same answers either way.

``buffered_body`` reads aiohttp's StreamReader from the inside; the first tests hold that to
the aiohttp in use, so an upgrade that changes it fails here instead of slowing the server
down unnoticed (or worse).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from unittest import mock

import pytest
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol

from http_api.handlers import SMALL_BODY_BYTES, buffered_body
from http_api.settings import Settings
from tests.helpers.gate import Gate, serve
from tests.helpers.rawhttp import port_of, read_reply
from tests.helpers.rules import SONGS, small_ruleset, snapshot_of


def reader(*chunks: bytes, eof: bool = True) -> StreamReader:
    """An aiohttp StreamReader as the HTTP parser fills it for a request body."""
    protocol = mock.Mock(spec=BaseProtocol, _reading_paused=False)
    stream = StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    for chunk in chunks:
        stream.feed_data(chunk)
    if eof:
        stream.feed_eof()
    return stream


async def test_a_small_body_in_one_chunk_is_taken_from_the_buffer() -> None:
    body = b'{"songs": ["Hey Jude"]}'
    stream = reader(body)
    assert buffered_body(stream) is body
    assert buffered_body(reader(b"x" * SMALL_BODY_BYTES)) == b"x" * SMALL_BODY_BYTES


async def test_other_bodies_are_left_to_the_public_reading() -> None:
    assert buffered_body(reader(b"{}", eof=False)) is None  # still arriving
    assert buffered_body(reader(b'{"so', b'ngs": []}')) is None  # in two chunks
    assert buffered_body(reader(b"x" * (SMALL_BODY_BYTES + 1))) is None  # large
    assert buffered_body(reader()) is None  # empty: nothing buffered
    partly_read = reader(b'{"songs": []}')
    assert partly_read.read_nowait(3) == b'{"s'
    assert buffered_body(partly_read) is None
    assert partly_read.read_nowait() == b'ongs": []}'


def post(body: bytes, *, chunked: bool = False) -> bytes:
    """A raw keep-alive ``POST /api/recommend`` of ``body``."""
    if chunked:
        framed = b"".join(
            b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (body[:5], body[5:]) if piece
        )
        return (
            b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            + framed
            + b"0\r\n\r\n"
        )
    return b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


@pytest.mark.parametrize("max_body_bytes", [64 * 1024, 1000])
async def test_pipelined_bodies_of_every_size_get_their_answers(max_body_bytes: int) -> None:
    # One write holds several requests: small, at and past the one-chunk limit, chunked or
    # not, each answered in order on the one connection, as if sent one by one. Past the body
    # limit comes a 413, and the connection closes (the rest of that body is never read).
    settings = dataclasses.replace(Settings(), max_body_bytes=max_body_bytes)
    gate = Gate(snapshot_of(small_ruleset()))
    bodies = [
        (json.dumps({"songs": [SONGS[0]], "limit": 2, "x": " " * pad}).encode(), chunked)
        for pad in (0, SMALL_BODY_BYTES - 40, SMALL_BODY_BYTES + 10, 20_000)
        for chunked in (False, True)
    ]
    answered = [body for body in bodies if len(body[0]) <= max_body_bytes]
    async with serve(gate, settings) as url:
        replies = []
        reader_, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
        try:
            writer.write(b"".join(post(body, chunked=chunked) for body, chunked in bodies))
            await writer.drain()
            async with asyncio.timeout(10):
                for _ in range(len(answered) + (len(answered) < len(bodies))):
                    replies.append(await read_reply(reader_))
        finally:
            writer.close()
        snapshot = gate.snapshot
        assert snapshot is not None
        expected = json.loads(snapshot.answer_json((SONGS[0],), 2, settings.ranking))
    for (body, chunked), reply in zip(answered, replies, strict=False):
        assert (reply.status, reply.json()) == (200, expected), (len(body), chunked)
    if len(answered) < len(bodies):
        assert replies[-1].status == 413
