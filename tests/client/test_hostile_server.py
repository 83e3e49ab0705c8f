"""The client against servers that misbehave, on loopback: raw replies written to the socket.

Each reply is what a broken proxy or a hostile server could send: JSON nested 100,000 deep, a
gzip bomb, terminal escape sequences, a malformed status line, a status outside HTTP's range.
The client runs as a real subprocess under an address-space limit, so a regression cannot take
the machine down.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.args import ExitCode
from tests.helpers.bombs import gzip_bomb
from tests.helpers.processes import REPO

# Far above what the client needs (~50 MiB), far below what reading a bomb whole would take.
ADDRESS_SPACE_LIMIT = 1 << 30
# How often the client's peak memory is read while it runs.
PEAK_POLL_SECONDS = 0.005


@dataclass
class RawServer:
    """A loopback server answering every connection with the same bytes, then closing."""

    reply: bytes = b""
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the request head (and whatever body came with it), answer, close."""
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    """A started RawServer on a free loopback port."""
    server = RawServer()
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server


def http_reply(body: bytes, status: str = "200 OK", headers: str = "") -> bytes:
    """A complete HTTP/1.1 response with a JSON content type."""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


@dataclass(frozen=True)
class Finished:
    """A client run: exit status, output, and its peak memory."""

    returncode: int
    stdout: str
    stderr: str
    max_rss_kib: int


def _client_peak_kib(pid: int) -> int | None:
    """The client's peak RSS so far (VmHWM), once ``pid`` runs the client; None before (the
    forked copy of pytest, then prlimit) or after it is gone."""
    try:
        if b"client" not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]:
            return None
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _run_limited(args: list[str], directory: Path) -> Finished:
    """Run the client with a bounded address space, reading its own peak RSS as it runs.

    Not wait4's ru_maxrss: Linux carries a process's high-water mark across fork and exec, so
    it would report this pytest process's size once that is larger than the client's."""
    out, err = directory / "stdout", directory / "stderr"
    peak = 0
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            ["prlimit", f"--as={ADDRESS_SPACE_LIMIT}", sys.executable, "-m", "client", *args],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=stdout,
            stderr=stderr,
        )
        while process.poll() is None:
            peak = max(peak, _client_peak_kib(process.pid) or 0)
            time.sleep(PEAK_POLL_SECONDS)
    return Finished(
        process.returncode,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
        peak,
    )


RunLimited = Callable[..., Awaitable[Finished]]


@pytest.fixture
def run_limited(tmp_path: Path) -> RunLimited:
    """`await run_limited(*args)` runs the client (in a thread, the loop keeps serving)."""

    async def run(*args: str) -> Finished:
        return await asyncio.wait_for(asyncio.to_thread(_run_limited, list(args), tmp_path), 60)

    return run


async def test_json_nested_100000_deep_is_a_bad_reply_not_a_crash(
    raw_server: RawServer, run_limited: RunLimited
) -> None:
    raw_server.reply = http_reply(b"[" * 100_000)
    result = await run_limited("127.0.0.1", str(raw_server.port), "Yellow")
    assert result.returncode == ExitCode.BAD_REPLY
    assert result.stderr == (
        f"error: reply is not a JSON object (application/json): '{'[' * 80}...'\n"
    )


async def test_json_nested_100000_deep_in_continuous_mode_is_a_failed_row(
    raw_server: RawServer, run_limited: RunLimited
) -> None:
    raw_server.reply = http_reply(b"[" * 100_000)
    result = await run_limited(
        "-c", "--count", "3", "--interval", "0.05", "127.0.0.1", str(raw_server.port), "Yellow"
    )
    assert result.returncode == ExitCode.OK
    rows = result.stdout.splitlines()
    assert rows[0] == "time,response_time,version,model_date"
    assert len(rows) == 4 and all(row.endswith(",,") for row in rows[1:])
    assert "requests: 3, failed: 3" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
async def test_a_gzip_bomb_reply_is_read_no_further_than_the_reply_limit(
    raw_server: RawServer, run_limited: RunLimited
) -> None:
    bomb = gzip_bomb(500)  # 0.5 MB that inflate to 500 MiB
    raw_server.reply = http_reply(bomb, headers="Content-Encoding: gzip\r\n")
    # Time enough to inflate it all, were the reading not bounded.
    result = await run_limited("--timeout", "60", "127.0.0.1", str(raw_server.port), "Yellow")
    assert result.returncode == ExitCode.BAD_REPLY
    assert result.stderr == (
        f"error: reply from http://127.0.0.1:{raw_server.port} is larger than 1048576 bytes: "
        "not read further\n"
    )
    # Read while it ran (0 would mean never seen), and far below the 500 MiB of the bomb.
    assert 0 < result.max_rss_kib < 200 * 1024


@pytest.mark.slow
async def test_a_reply_declaring_more_than_the_limit_is_not_read(
    raw_server: RawServer, run_limited: RunLimited
) -> None:
    raw_server.reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n{"
    )
    result = await run_limited("127.0.0.1", str(raw_server.port), "Yellow")
    assert result.returncode == ExitCode.BAD_REPLY
    assert "is larger than 1048576 bytes" in result.stderr


ESCAPES = "\x1b[2J\x1b[31m\x9b1m\x07\u202e"


@pytest.mark.slow
async def test_terminal_escapes_from_the_server_are_printed_escaped(
    raw_server: RawServer, run_limited: RunLimited
) -> None:
    reply = {"songs": [f"Evil{ESCAPES}Song"], "version": f"1.0{ESCAPES}", "model_date": ESCAPES}
    # As JSON encodes them: ESC as \u001b, CSI and the bidi override as they are.
    body = json.dumps(reply, ensure_ascii=False).encode()
    raw_server.reply = http_reply(body)
    for args in ([], ["--json"], ["-c", "--count", "1"]):
        result = await run_limited(*args, "127.0.0.1", str(raw_server.port), "Yellow")
        assert result.returncode == ExitCode.OK, result.stderr
        for raw in "\x1b\x9b\x07\u202e":
            assert raw not in result.stdout + result.stderr, (args, result)
    one_shot = (await run_limited("127.0.0.1", str(raw_server.port), "Yellow")).stdout
    assert "    Evil\\x1b[2J\\x1b[31m\\x9b1m\\x07\\u202eSong\n" in one_shot


async def test_terminal_escapes_in_an_error_message_are_printed_escaped(
    raw_server: RawServer, run_limited: RunLimited
) -> None:
    error = {"error": f"bad{ESCAPES}\nsecond line"}
    raw_server.reply = http_reply(
        json.dumps(error, ensure_ascii=False).encode(), status="400 Bad Request"
    )
    result = await run_limited("127.0.0.1", str(raw_server.port), "Yellow")
    assert result.returncode == ExitCode.REJECTED
    assert result.stderr == (
        "error: server rejected the request (400 Bad Request): "
        "bad\\x1b[2J\\x1b[31m\\x9b1m\\x07\\u202e second line\n"
    )


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}",
            "is not valid HTTP: Bad status line: Invalid status code (b'HTTP/1.1 abc OK')",
        ),
        (b"hello there\r\n\r\n", "is not valid HTTP: Bad status line"),
        (
            b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 2\r\n\r\n{}",
            "is not valid HTTP: Invalid header token (b'Bad Header: x')",
        ),
    ],
)
async def test_a_malformed_reply_head_is_one_clear_line(
    raw_server: RawServer, run_limited: RunLimited, reply: bytes, message: str
) -> None:
    raw_server.reply = reply
    result = await run_limited("127.0.0.1", str(raw_server.port), "Yellow")
    assert result.returncode == ExitCode.BAD_REPLY
    assert result.stderr.startswith(f"error: reply from http://127.0.0.1:{raw_server.port} ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


async def test_a_status_outside_http_is_a_bad_reply_not_a_server_error(
    raw_server: RawServer, run_limited: RunLimited
) -> None:
    raw_server.reply = http_reply(
        b'{"error": "odd"}', status="999 Weird", headers="Retry-After: 1\r\n"
    )
    result = await run_limited("127.0.0.1", str(raw_server.port), "Yellow")
    assert result.returncode == ExitCode.BAD_REPLY
    assert result.stderr == "error: reply status 999 is not an HTTP status\n"


@pytest.mark.parametrize(
    ("coding", "body", "message"),
    [
        ("br", b"{}", "has a Content-Encoding the client does not decode ('br'; it asks for"),
        ("gzip", b"not gzip", "is not valid gzip data"),
    ],
)
async def test_a_reply_the_client_cannot_inflate_is_a_bad_reply(
    raw_server: RawServer, run_limited: RunLimited, coding: str, body: bytes, message: str
) -> None:
    raw_server.reply = http_reply(body, headers=f"Content-Encoding: {coding}\r\n")
    result = await run_limited("127.0.0.1", str(raw_server.port), "Yellow")
    assert result.returncode == ExitCode.BAD_REPLY
    assert result.stderr.startswith(f"error: reply from http://127.0.0.1:{raw_server.port} ")
    assert message in result.stderr


async def test_a_compressed_reply_is_read(raw_server: RawServer, run_limited: RunLimited) -> None:
    reply = {"songs": ["Fix You"], "version": "1.0", "model_date": "2026-01-01 00:00:00.000000"}
    raw_server.reply = http_reply(
        gzip.compress(json.dumps(reply).encode()), headers="Content-Encoding: gzip\r\n"
    )
    result = await run_limited("127.0.0.1", str(raw_server.port), "Yellow")
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.endswith("    Fix You\n")
