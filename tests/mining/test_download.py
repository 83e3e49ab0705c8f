"""The dataset resolver and downloader, against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from mining import download, partialdownload
from mining.download import DownloadError, resolve_dataset
from tests.helpers.processes import free_port, run_python

BODY = random.Random(0).randbytes(700_000)
ETAG = '"v1"'
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """A real aiohttp server on its own thread and loop, recording each request's headers."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, str]] = []
        self._handler = handler
        self._ssl_context = ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        # Set at teardown so handlers that stall on purpose return.
        self.released: asyncio.Event | None = None
        self.port = 0

    async def _record_and_handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        return await self._handler(request)

    async def _start(self) -> None:
        self.released = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._record_and_handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        assert self.released is not None and self._runner is not None
        self.released.set()
        await self._runner.cleanup()

    def url(self, path: str = "/data/playlists.csv.gz") -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Server:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def fetch(url: str, data_dir: Path, *, timeout: float = 0.5, max_attempts: int = 6) -> Path:
    """resolve_dataset with tiny backoff, so that every retry path runs in well under a second."""
    return resolve_dataset(
        url, data_dir, timeout=timeout, max_attempts=max_attempts, backoff_cap=0.02
    )


def _range_start(request: web.Request) -> int | None:
    header = request.headers.get("Range")
    if not header:
        return None
    assert header.startswith("bytes=") and header.endswith("-"), header
    return int(header[len("bytes=") : -1])


async def serve_with_ranges(
    request: web.Request, body: bytes = BODY, etag: str = ETAG
) -> web.StreamResponse:
    """A static-file server that honours Range and If-Range (strong ETag), like nginx does."""
    start = _range_start(request)
    if_range = request.headers.get("If-Range")
    if start is None or (if_range is not None and if_range != etag):
        return web.Response(body=body, headers={"ETag": etag})
    if start >= len(body):
        return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
    return web.Response(
        status=206,
        body=body[start:],
        headers={"ETag": etag, "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"},
    )


async def drop_half_way(
    request: web.Request, body: bytes = BODY, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Announce the whole body, send part of it, then cut the connection."""
    response = web.StreamResponse(headers=headers or {"ETag": ETAG})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) * 2 // 5])
    assert request.transport is not None
    request.transport.abort()
    return response


def handlers_in_turn(*handlers: Handler) -> Handler:
    """Answer the n-th request with the n-th handler, then keep using the last one."""
    served = 0

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal served
        handler = handlers[min(served, len(handlers) - 1)]
        served += 1
        return await handler(request)

    return handle


def leftovers(data_dir: Path) -> list[str]:
    """Files other than completed downloads (partials, sidecars, temporaries)."""
    return sorted(p.name for p in data_dir.iterdir() if not p.name.startswith("download-"))


def test_downloads_the_file_under_a_name_keeping_its_suffix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mining.download")
    with Server(serve_with_ranges) as server:
        path = fetch(server.url(), tmp_path / "ml-data")
    assert path.read_bytes() == BODY
    assert path.parent == tmp_path / "ml-data"
    assert path.name.endswith("-playlists.csv.gz")
    assert leftovers(path.parent) == []
    assert "Range" not in server.requests[0]
    final = caplog.records[-1].getMessage()
    assert f"{len(BODY)} bytes" in final and str(path) in final


def test_dropped_connection_is_resumed_with_a_range_request(tmp_path: Path) -> None:
    with Server(handlers_in_turn(drop_half_way, serve_with_ranges)) as server:
        path = fetch(server.url(), tmp_path)
    assert path.read_bytes() == BODY
    assert len(server.requests) == 2
    resumed_at = len(BODY) * 2 // 5
    assert server.requests[1]["Range"] == f"bytes={resumed_at}-"
    assert server.requests[1]["If-Range"] == ETAG
    assert leftovers(tmp_path) == []


def test_server_error_then_success_is_retried(tmp_path: Path) -> None:
    async def fail(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="boom")

    with Server(handlers_in_turn(fail, serve_with_ranges)) as server:
        path = fetch(server.url(), tmp_path)
    assert path.read_bytes() == BODY
    assert len(server.requests) == 2


def test_not_found_fails_at_once_naming_status_and_url(tmp_path: Path) -> None:
    async def missing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="no such file")

    with Server(missing) as server, pytest.raises(DownloadError) as caught:
        fetch(server.url(), tmp_path)
    message = str(caught.value)
    assert "404" in message and server.url() in message
    assert "\n" not in message
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_status_past_599_is_no_server_error_and_is_not_retried(tmp_path: Path) -> None:
    async def nonsense(request: web.Request) -> web.StreamResponse:
        return web.Response(status=999, text="what")

    with Server(nonsense) as server, pytest.raises(DownloadError, match="HTTP 999"):
        fetch(server.url(), tmp_path)
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_refused_connections_give_up_leaving_nothing_behind(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/playlists.csv"
    with pytest.raises(DownloadError, match=r"cannot download .* \(2 attempts without progress\)"):
        fetch(url, tmp_path, max_attempts=2)
    assert list(tmp_path.iterdir()) == []


def test_body_shorter_than_content_length_is_never_accepted(tmp_path: Path) -> None:
    # No validator and no Range support: every attempt restarts and ends short.
    async def always_short(request: web.Request) -> web.StreamResponse:
        return await drop_half_way(request, headers={"Content-Type": "text/csv"})

    with Server(always_short) as server, pytest.raises(DownloadError) as caught:
        fetch(server.url(), tmp_path, max_attempts=3)
    assert "3 attempts" in str(caught.value)
    assert len(server.requests) == 3
    assert not any(p.name.startswith("download-") for p in tmp_path.iterdir())


def test_short_body_then_full_body_gives_the_full_file(tmp_path: Path) -> None:
    async def short_without_validator(request: web.Request) -> web.StreamResponse:
        return await drop_half_way(request, headers={"Content-Type": "text/csv"})

    async def whole(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BODY)

    with Server(handlers_in_turn(short_without_validator, whole)) as server:
        path = fetch(server.url(), tmp_path)
    # Within one run the partial may be resumed even without a validator ...
    assert "Range" in server.requests[1]
    # ... and a server answering 200 to it restarts the file from zero.
    assert path.read_bytes() == BODY


def test_server_ignoring_range_restarts_from_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mining.download")

    async def ignores_range(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BODY, headers={"ETag": ETAG})

    with Server(handlers_in_turn(drop_half_way, ignores_range)) as server:
        path = fetch(server.url(), tmp_path)
    assert server.requests[1]["Range"] == f"bytes={len(BODY) * 2 // 5}-"
    assert path.read_bytes() == BODY
    assert any("restarting at 0" in r.getMessage() for r in caplog.records)


def test_stalled_server_times_out_and_is_retried(tmp_path: Path) -> None:
    server: Server

    async def stall(request: web.Request) -> web.StreamResponse:
        assert server.released is not None
        await server.released.wait()
        return web.Response(status=503)

    with Server(handlers_in_turn(stall, serve_with_ranges)) as server:
        path = resolve_dataset(server.url(), tmp_path, timeout=0.2, backoff_cap=0.02)
    assert path.read_bytes() == BODY
    assert len(server.requests) == 2


def test_server_that_always_stalls_gives_up_after_max_attempts(tmp_path: Path) -> None:
    server: Server

    async def stall_mid_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(BODY)
        await response.prepare(request)
        await response.write(BODY[:1000] if "Range" not in request.headers else b"")
        assert server.released is not None
        await server.released.wait()
        return response

    with Server(stall_mid_body) as server, pytest.raises(DownloadError) as caught:
        resolve_dataset(server.url(), tmp_path, timeout=0.2, max_attempts=2, backoff_cap=0.02)
    assert "2 attempts" in str(caught.value)
    assert len(server.requests) == 2


def test_partial_from_an_earlier_run_is_resumed_only_if_unchanged(tmp_path: Path) -> None:
    new_body = BODY[::-1]

    async def changed(request: web.Request) -> web.StreamResponse:
        return await serve_with_ranges(request, body=new_body, etag='"v2"')

    with Server(handlers_in_turn(drop_half_way, serve_with_ranges, changed)) as server:
        with pytest.raises(DownloadError):
            fetch(server.url(), tmp_path, max_attempts=1)
        kept = leftovers(tmp_path)
        assert any(name.endswith(".part") for name in kept)

        path = fetch(server.url(), tmp_path)
        assert path.read_bytes() == BODY
        assert server.requests[1]["If-Range"] == ETAG
        assert server.requests[1]["Range"] == f"bytes={len(BODY) * 2 // 5}-"

        # A later run downloads afresh and gets the changed content, never the old file.
        path = fetch(server.url(), tmp_path)
        assert path.read_bytes() == new_body
        assert "Range" not in server.requests[2]
    assert leftovers(tmp_path) == []


def test_partial_without_validator_from_an_earlier_run_is_discarded(tmp_path: Path) -> None:
    async def short_without_validator(request: web.Request) -> web.StreamResponse:
        return await drop_half_way(request, headers={"Content-Type": "text/csv"})

    with Server(handlers_in_turn(short_without_validator, serve_with_ranges)) as server:
        with pytest.raises(DownloadError):
            fetch(server.url(), tmp_path, max_attempts=1)
        path = fetch(server.url(), tmp_path)
    assert "Range" not in server.requests[1]
    assert path.read_bytes() == BODY


def test_complete_partial_answered_416_is_finished_without_download(tmp_path: Path) -> None:
    with Server(serve_with_ranges) as server:
        url = server.url()
        paths = partialdownload.paths_for(url, tmp_path)
        # What a run killed between the last byte and the rename leaves behind.
        paths.partial.write_bytes(BODY)
        sidecar = {"url": url, "validator": ETAG, "total": len(BODY)}
        paths.sidecar.write_text(json.dumps(sidecar))
        path = fetch(url, tmp_path)
    assert path.read_bytes() == BODY
    assert server.requests[0]["Range"] == f"bytes={len(BODY)}-"
    assert len(server.requests) == 1
    assert leftovers(tmp_path) == []


def test_partial_longer_than_the_file_restarts(tmp_path: Path) -> None:
    with Server(serve_with_ranges) as server:
        url = server.url()
        paths = partialdownload.paths_for(url, tmp_path)
        paths.partial.write_bytes(BODY + b"stale tail")
        paths.sidecar.write_text(json.dumps({"url": url, "validator": ETAG, "total": None}))
        path = fetch(url, tmp_path)
    assert path.read_bytes() == BODY
    assert [r.get("Range") for r in server.requests] == [f"bytes={len(BODY) + 10}-", None]


def test_second_downloader_of_the_same_url_is_refused(tmp_path: Path) -> None:
    server: Server
    first_started = threading.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        first_started.set()
        assert server.released is not None
        await server.released.wait()
        return web.Response(status=503)

    errors: list[BaseException] = []

    def first() -> None:
        try:
            resolve_dataset(server.url(), tmp_path, timeout=3, max_attempts=1)
        except DownloadError as exc:
            errors.append(exc)

    with Server(slow) as server:
        thread = threading.Thread(target=first)
        thread.start()
        assert first_started.wait(5)
        with pytest.raises(DownloadError, match="another process is downloading"):
            fetch(server.url(), tmp_path)
    thread.join(5)
    assert len(errors) == 1  # the first one failed on its own (server shut down), not hung


def test_progress_is_logged_with_bytes_and_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "_PROGRESS_INTERVAL_S", 0.0)
    caplog.set_level(logging.INFO, logger="mining.download")
    with Server(serve_with_ranges) as server:
        fetch(server.url(), tmp_path)
    progress = [r.getMessage() for r in caplog.records if "downloading" in r.getMessage()]
    assert progress
    assert f"of {len(BODY)} bytes" in progress[-1] and " s" in progress[-1]


@pytest.fixture(scope="module")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate (Debian package openssl)")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_certificates_are_verified(
    tmp_path: Path, self_signed_cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with Server(serve_with_ranges, ssl_context=context) as server:
        with pytest.raises(DownloadError, match="certificate"):
            fetch(server.url(), tmp_path)
        # Trusting the certificate (as a cluster would with its CA bundle) makes it work.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        path = fetch(server.url(), tmp_path)
    assert path.read_bytes() == BODY


def test_file_url_with_percent_encoded_spaces_is_read_in_place(tmp_path: Path) -> None:
    source = tmp_path / "my data" / "play lists #1, 100%.csv"
    source.parent.mkdir()
    source.write_text("pid,track_name\n0,a\n")
    url = source.as_uri()
    assert "%20" in url and "%23" in url
    assert resolve_dataset(url, tmp_path / "ml-data") == source
    assert resolve_dataset(download.normalise_dataset_url(str(source)), tmp_path) == source
    localhost = url.replace("file://", "file://localhost", 1)
    assert resolve_dataset(localhost, tmp_path) == source
    assert not (tmp_path / "ml-data").exists()  # nothing copied or created


def test_plain_relative_path_is_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "p.csv.gz").write_bytes(b"\x1f\x8b")
    monkeypatch.chdir(tmp_path)
    assert resolve_dataset("data/p.csv.gz", Path("ml-data")) == tmp_path / "data" / "p.csv.gz"


@pytest.mark.parametrize(
    ("make_url", "expected"),
    [
        (lambda d: str(d / "missing.csv"), "not found"),
        (lambda d: (d / "missing file.csv").as_uri(), "not found"),
        (str, "not a regular file"),
        (lambda d: "file://elsewhere/x.csv", "remote host"),
        (lambda d: (d / "x.csv").as_uri() + "?v=1", "percent-encode"),
        (lambda d: "ftp://example.org/x.csv", "unsupported dataset URL scheme 'ftp'"),
    ],
)
def test_unusable_local_sources_fail_with_one_line(
    tmp_path: Path, make_url: Callable[[Path], str], expected: str
) -> None:
    with pytest.raises(DownloadError, match=expected) as caught:
        resolve_dataset(make_url(tmp_path), tmp_path)
    assert "\n" not in str(caught.value)


def test_data_dir_that_cannot_be_created_fails_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "ml-data"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(DownloadError, match="cannot create data directory"):
        fetch("http://127.0.0.1:1/playlists.csv", blocker / "sub")


# -- the download limit -----------------------------------------------------------------------


def fetch_at_most(url: str, data_dir: Path, max_bytes: int) -> Path:
    return resolve_dataset(
        url, data_dir, timeout=0.5, max_attempts=3, backoff_cap=0.02, max_bytes=max_bytes
    )


async def chunked(request: web.Request) -> web.StreamResponse:
    """BODY streamed without Content-Length, in 64 KiB chunks."""
    response = web.StreamResponse()
    await response.prepare(request)
    for start in range(0, len(BODY), 64 * 1024):
        await response.write(BODY[start : start + 64 * 1024])
    return response


def test_a_body_without_length_stops_at_the_limit_and_keeps_nothing(tmp_path: Path) -> None:
    with Server(chunked) as server:
        with pytest.raises(download.DownloadTooLargeError, match="larger than the download limit"):
            fetch_at_most(server.url(), tmp_path, max_bytes=300_000)
        assert len(server.requests) == 1, "a body over the limit is not retried"
        assert leftovers(tmp_path) == [] and not list(tmp_path.glob("download-*"))
        # Exactly the limit is within it.
        assert fetch_at_most(server.url(), tmp_path, max_bytes=len(BODY)).read_bytes() == BODY


def test_a_content_length_over_the_limit_is_refused_before_the_body(tmp_path: Path) -> None:
    with Server(serve_with_ranges) as server:
        with pytest.raises(
            download.DownloadTooLargeError, match=f"is {len(BODY)} bytes, larger than"
        ):
            fetch_at_most(server.url(), tmp_path, max_bytes=len(BODY) - 1)
        assert len(server.requests) == 1
    assert leftovers(tmp_path) == []


def test_a_fifo_at_the_partial_download_name_fails_instead_of_blocking(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/playlists.csv"
    os.mkfifo(partialdownload.paths_for(url, tmp_path).partial)
    code = f"""
from pathlib import Path
from mining.download import DownloadError, resolve_dataset
try:
    resolve_dataset({url!r}, Path({str(tmp_path)!r}), max_attempts=1)
except DownloadError as exc:
    print(exc)
"""
    result = run_python(code, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cannot write ") and ".part" in result.stdout
