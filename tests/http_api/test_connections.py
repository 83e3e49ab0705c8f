"""Connections as the HttpFrontend actor serves them, against a real server on loopback over raw
sockets: malformed requests, Expect, Content-Encoding, Range, idle and body timeouts, the cap.

The server is ``http_api.connections.start_serving`` around the real app (tests/helpers/gate.py);
``test_server.py`` runs the same through ``python -m http_api`` under a descriptor limit.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import time
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp.http_exceptions import BadHttpMessage

from http_api import capacity, malformed, metrics
from http_api.settings import Settings
from recommender.snapshot import Snapshot
from tests.helpers.gate import Gate, serve
from tests.helpers.rawhttp import exchange, port_of, read_reply
from tests.helpers.rules import small_ruleset, snapshot_of

SETTINGS = Settings(rules_wait_seconds=5.0)
RECOMMEND = b'{"songs": ["Hey Jude"], "limit": 2}'
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


def post(body: bytes, extra: str = "", path: str = "/api/recommend") -> bytes:
    """A POST with ``body`` and extra header lines."""
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def requests_counted(route: str, status: int) -> float:
    """``http_requests_total`` for ``route`` and ``status`` in the server's registry, any method."""
    return sum(
        sample.value
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.name == "http_requests_total"
        and sample.labels.get("route") == route
        and sample.labels.get("code") == str(status)
    )


@pytest.fixture
def snapshot() -> Snapshot:
    """Three rules over five songs."""
    return snapshot_of(small_ruleset())


@pytest.fixture
async def port(snapshot: Snapshot) -> AsyncIterator[int]:
    """A server with rules on a free loopback port."""
    async with serve(Gate(snapshot), SETTINGS) as url:
        yield port_of(url)


# -- malformed requests: JSON, counted, logged once per client and cause ---------------------

TOO_LONG = "x" * 9000
MALFORMED = {
    "lowercase method": (b"post /api/recommend HTTP/1.1\r\nHost: t\r\n\r\n", 400, "method"),
    "space in a header name": (
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header: y\r\n\r\n",
        400,
        "header",
    ),
    "letters in Content-Length": (
        b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        400,
        "Content-Length",
    ),
    "two Content-Lengths": (
        b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
        b"Content-Length: 4\r\n\r\nabcd",
        400,
        "Content-Length",
    ),
    "Content-Length with Transfer-Encoding": (
        b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 3\r\n\r\n0\r\n\r\n",
        400,
        "Transfer-Encoding",
    ),
    "unknown Transfer-Encoding": (
        b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
        "Transfer-Encoding",
    ),
    "bad chunk size": (
        b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nabc\r\n0\r\n\r\n",
        400,
        "chunk",
    ),
    "no Host": (b"GET /healthz HTTP/1.1\r\n\r\n", 400, "Host"),
    "a header over 8190 bytes": (
        f"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Long: {TOO_LONG}\r\n\r\n".encode(),
        431,
        "longer than 8190 bytes",
    ),
    "a target over 8190 bytes": (
        f"GET /{TOO_LONG} HTTP/1.1\r\nHost: t\r\n\r\n".encode(),
        431,
        "longer than 8190 bytes",
    ),
    "200 headers": (
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-%d: a\r\n" % i for i in range(200))
        + b"\r\n",
        431,
        "headers",
    ),
    "HTTP/3.0": (b"GET /healthz HTTP/3.0\r\nHost: t\r\n\r\n", 400, "version"),
    "NUL in the path": (b"GET /heal\x00thz HTTP/1.1\r\nHost: t\r\n\r\n", 400, "url"),
    "a TLS handshake": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "HTTPS"),
    "the HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "PRI"),
    "CONNECT": (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        400,
        "'example.com:443' is not a path",
    ),
    "OPTIONS *": (b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 400, "'*' is not a path"),
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_request_is_a_json_error_counted_and_logged_once(
    port: int, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    request, status, cause = MALFORMED[case]
    caplog.set_level(logging.DEBUG)
    before = requests_counted(metrics.MALFORMED_ROUTE, status)
    for _ in range(3):
        reply = await exchange(port, request, check_closed=True)
        assert reply.status == status
        error = reply.json()
        assert isinstance(error, dict) and set(error) == {"error"}
        assert error["error"].startswith("malformed request: ")
        assert cause in error["error"]
        assert reply.closed
    assert requests_counted(metrics.MALFORMED_ROUTE, status) == before + 3
    assert isinstance(error, dict)
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in logged] == [
        f"malformed request from 127.0.0.1: {status} {error['error'].split(': ', 1)[1]} "
        "(logged once per client and cause; all are counted in /metrics)"
    ]
    assert all(r.exc_info is None for r in caplog.records)
    # The server still serves.
    assert (await exchange(port, HEALTHZ)).status == 200


def test_a_parse_error_quotes_no_more_than_a_short_sanitised_excerpt() -> None:
    exc = BadHttpMessage("Bad \x1b[31mthing\x07: " + "y" * 500 + ":\n\n  b'raw bytes'\n   ^")
    status, cause = malformed.describe_parse_error(exc, 400, 8190)
    assert status == 400
    assert "\x1b" not in cause and "\x07" not in cause and "raw bytes" not in cause
    assert cause.startswith("Bad \\x1b[31mthing\\x07: yyy")
    assert len(cause) <= malformed.MAX_CAUSE_CHARS


# -- Expect, Content-Encoding, Range ---------------------------------------------------------


async def test_an_unknown_expectation_is_a_json_417(port: int) -> None:
    before = requests_counted("/api/recommend", 417)
    reply = await exchange(port, post(RECOMMEND, "Expect: foo\r\n"))
    assert reply.status == 417
    assert reply.json() == {"error": "expectation 'foo' is not supported; only 100-continue"}
    assert requests_counted("/api/recommend", 417) == before + 1


async def test_a_declared_body_over_the_limit_gets_413_without_100_continue(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Content-Length: 5000000\r\n\r\n"
        )
        reply = await asyncio.wait_for(read_reply(reader), 10)
        assert reply.status == 413
        assert json.loads(reply.body) == {"error": "request body is larger than 1048576 bytes"}
        assert reply.headers["connection"] == "close"
    finally:
        writer.close()


async def test_100_continue_is_sent_for_a_body_within_the_limit(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = post(RECOMMEND, "Expect: 100-continue\r\n").removesuffix(RECOMMEND)
        writer.write(head)
        interim = await asyncio.wait_for(read_reply(reader), 10)
        assert interim.status_line == "HTTP/1.1 100 Continue"
        writer.write(RECOMMEND)
        reply = await asyncio.wait_for(read_reply(reader), 10)
        assert reply.status == 200
        assert json.loads(reply.body)["songs"] == ["Yesterday", "Imagine"]
    finally:
        writer.close()


@pytest.mark.parametrize("coding", ["br", "zstd", "foo", "gzip, gzip", "compress"])
async def test_a_content_encoding_the_server_cannot_decode_is_a_json_415(
    port: int, coding: str
) -> None:
    reply = await exchange(port, post(RECOMMEND, f"Content-Encoding: {coding}\r\n"))
    assert reply.status == 415
    assert reply.headers["accept-encoding"] == "gzip, deflate, identity"
    error = reply.json()
    assert isinstance(error, dict) and "Content-Encoding" in error["error"]


def _deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(wbits=wbits)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("identity", RECOMMEND),
        ("gzip", gzip.compress(RECOMMEND)),
        ("x-gzip", gzip.compress(RECOMMEND)),
        ("GZip", gzip.compress(RECOMMEND)),
        # Several gzip members, as `cat a.gz b.gz` makes: the whole body, not the first member.
        ("gzip", gzip.compress(RECOMMEND[:10]) + gzip.compress(RECOMMEND[10:])),
        ("deflate", _deflate(RECOMMEND, zlib.MAX_WBITS)),
        ("deflate", _deflate(RECOMMEND, -zlib.MAX_WBITS)),  # raw deflate, as some clients send
    ],
)
async def test_each_supported_content_encoding_is_decoded(
    port: int, coding: str, body: bytes
) -> None:
    reply = await exchange(port, post(body, f"Content-Encoding: {coding}\r\n"))
    assert reply.status == 200
    answer = reply.json()
    assert isinstance(answer, dict) and answer["songs"] == ["Yesterday", "Imagine"]


@pytest.mark.parametrize(
    ("coding", "body", "message"),
    [
        ("gzip", gzip.compress(RECOMMEND)[:-6], "body is not valid gzip data: it ends early"),
        ("gzip", gzip.compress(RECOMMEND) + b"junk", "body is not valid gzip data"),
        ("gzip", gzip.compress(b"") * 40, "body is made of more than 16 gzip members"),
        ("deflate", _deflate(RECOMMEND, 15) + b"x", "body is not valid deflate data: bytes follow"),
        ("deflate", b"\x78\x9c not zlib", "body is not valid deflate data"),
    ],
)
async def test_broken_compressed_data_is_a_json_400(
    port: int, coding: str, body: bytes, message: str
) -> None:
    reply = await exchange(port, post(body, f"Content-Encoding: {coding}\r\n"))
    assert reply.status == 400
    error = reply.json()
    assert isinstance(error, dict) and error["error"].startswith(message)


@pytest.mark.parametrize("ranges", ["bytes=999999-", "bytes=x", "bytes=0-10"])
async def test_the_page_ignores_range_and_revalidates_by_etag(port: int, ranges: str) -> None:
    full = await exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert full.status == 200 and b"<!doctype html>" in full.body
    ranged = await exchange(port, f"GET / HTTP/1.1\r\nHost: t\r\nRange: {ranges}\r\n\r\n".encode())
    assert (ranged.status, ranged.body) == (200, full.body)
    etag = full.headers["etag"]
    again = await exchange(
        port, f"GET / HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n".encode()
    )
    assert (again.status, again.body, again.headers["etag"]) == (304, b"", etag)


# -- timeouts --------------------------------------------------------------------------------


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> float:
    """Seconds until the server closes the connection (fails after ``limit``)."""
    started = time.monotonic()
    async with asyncio.timeout(limit):
        while await reader.read(65536):
            pass
    return time.monotonic() - started


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /healthz HTTP/1.1\r\nHo", HEALTHZ],
    ids=["silent", "part of a head", "idle after a request"],
)
async def test_a_connection_without_a_request_in_progress_is_closed_after_the_idle_timeout(
    snapshot: Snapshot, sent: bytes
) -> None:
    settings = Settings(idle_timeout_seconds=0.5)
    async with serve(Gate(snapshot), settings) as url:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
        try:
            writer.write(sent)
            closed_after = await _closed_after(reader, 10)
        finally:
            writer.close()
    # aiohttp rounds timers of 5 s and more up to whole seconds; 0.5 s stays 0.5 s.
    assert 0.4 <= closed_after < 5


async def test_a_body_that_stops_arriving_gets_a_408(snapshot: Snapshot) -> None:
    settings = Settings(body_timeout_seconds=0.3)
    async with serve(Gate(snapshot), settings) as url:
        started = time.monotonic()
        reply = await exchange(port_of(url), post(RECOMMEND)[:-5], check_closed=True, timeout=10)
    assert reply.status == 408
    assert reply.json() == {"error": "the request body did not arrive within 0.3 s"}
    assert reply.closed
    assert 0.25 <= time.monotonic() - started < 5


# -- the connection cap ----------------------------------------------------------------------


async def _is_closed(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(0.3):
            return await reader.read(1) == b""
    except TimeoutError:
        return False


async def test_at_the_cap_a_new_connection_closes_the_one_idle_the_longest(
    snapshot: Snapshot,
) -> None:
    async with serve(Gate(snapshot), Settings(max_connections=3)) as url:
        port = port_of(url)
        silent = []
        for _ in range(3):
            silent.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.05)
        # The third one becomes busy, then idle again after its answer: idle the shortest.
        reader, writer = silent[2]
        writer.write(HEALTHZ)
        assert (await read_reply(reader)).status == 200
        try:
            assert (await exchange(port, HEALTHZ)).status == 200
            assert [await _is_closed(r) for r, _ in silent] == [True, False, False]
            # That one has left: one more to be at the cap again, then the next longest idle.
            silent.append(await asyncio.open_connection("127.0.0.1", port))
            assert (await exchange(port, HEALTHZ)).status == 200
            assert [await _is_closed(r) for r, _ in silent[1:]] == [True, False, False]
        finally:
            for _, w in silent:
                w.close()


@pytest.mark.parametrize("attempt", range(5))
async def test_a_request_read_but_not_yet_handled_is_never_closed_for_a_new_connection(
    snapshot: Snapshot, attempt: int
) -> None:
    # A request, then a connection over the cap, both queued by the kernel before the loop's
    # next turn (blocking socket calls on the loop's own thread, so the server cannot run in
    # between). On Python 3.11 aiohttp takes the request from its queue and starts its handler
    # a turn later: in that turn the connection has neither a queued request nor one in
    # progress, and it was closed unanswered as the one idle the longest.
    loop = asyncio.get_running_loop()
    async with serve(Gate(snapshot), Settings(max_connections=1)) as url:
        port = port_of(url)
        first = socket.create_connection(("127.0.0.1", port))
        newcomer: socket.socket | None = None
        try:
            await asyncio.sleep(0.05)  # accepted, waiting for its request
            first.sendall(HEALTHZ)
            newcomer = socket.create_connection(("127.0.0.1", port))
            newcomer.sendall(HEALTHZ)
            for sock in (first, newcomer):
                sock.setblocking(False)
                reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
                assert reply.startswith(b"HTTP/1.1 200 "), reply
        finally:
            first.close()
            if newcomer is not None:
                newcomer.close()


async def test_at_the_cap_with_every_request_in_progress_new_connections_wait(
    snapshot: Snapshot,
) -> None:
    gate = Gate()  # no rules yet: each recommend is held
    async with serve(gate, Settings(max_connections=2, rules_wait_seconds=30)) as url:
        port = port_of(url)
        held = [asyncio.create_task(exchange(port, post(RECOMMEND))) for _ in range(2)]
        async with asyncio.timeout(10):
            while gate.waits < 2:
                await asyncio.sleep(0.01)
        waiting = asyncio.create_task(exchange(port, HEALTHZ))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # no connection was idle: nothing was closed for it
        gate.publish(snapshot)
        assert [(await h).status for h in held] == [200, 200]
        assert (await asyncio.wait_for(waiting, 5)).status == 200


def test_the_default_cap_leaves_descriptors_for_the_rest_of_the_server() -> None:
    assert capacity.default_max_connections(256) == 192
    assert capacity.default_max_connections(100) == 50
    assert capacity.default_max_connections(1_048_576) == capacity.MAX_DEFAULT_CONNECTIONS
    assert capacity.default_max_connections(None) == capacity.MAX_DEFAULT_CONNECTIONS
    assert capacity.max_connections_problem(Settings(max_connections=255), 256) is None
    problem = capacity.max_connections_problem(Settings(max_connections=256), 256)
    assert problem == (
        "MAX_CONNECTIONS=256 needs more descriptors than this process may open (256, "
        "ulimit -n); use at most 192, or auto"
    )
