"""HTTP/1.1 over a raw loopback socket: requests no HTTP client library would send.

``exchange`` writes bytes, reads one response (``Content-Length`` or until the server closes),
and can tell whether the server closed the connection after it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """One response as read off the wire."""

    status_line: str
    headers: dict[str, str]
    body: bytes
    # After the response: True when the server closed the connection (None: not checked).
    closed: bool | None = None

    @property
    def status(self) -> int:
        """The status code."""
        return int(self.status_line.split()[1])

    def json(self) -> object:
        """The body as JSON (fails the test when it is not)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


def port_of(url: str) -> int:
    """The port of an ``http://127.0.0.1:PORT`` URL."""
    return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    """One response (an interim 1xx is returned as it is: call again for the final one)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value for name, _, value in (line.partition(": ") for line in lines if line)
    }
    status = status_line.split()[1]
    if status.startswith("1") or status in ("204", "304"):
        return Reply(status_line, headers, b"")
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return Reply(status_line, headers, body)


async def exchange(
    port: int, request: bytes, *, check_closed: bool = False, timeout: float = 10
) -> Reply:
    """Send ``request`` to 127.0.0.1:``port`` and read the response (skipping a ``100
    Continue``); with ``check_closed``, wait (up to 1 s) to see whether the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            reply = await read_reply(reader)
            while reply.status == 100:
                reply = await read_reply(reader)
        closed = None
        if check_closed:
            try:
                async with asyncio.timeout(1):
                    closed = await reader.read(1) == b""
            except TimeoutError:
                closed = False
        return Reply(reply.status_line, reply.headers, reply.body, closed)
    finally:
        writer.close()
