"""Getting the dataset: local files are read in place, http(s) URLs are downloaded into DATA_DIR.

Download policy. Every call downloads afresh: the job only asks for the dataset
when it must mine again, and a URL's content may have changed since the last
run, so a completed download is never reused. The finished file is written
under ``download-<key>-<name>`` (``key`` from a hash of the URL, ``name`` the
URL's last path segment, so the reader can tell ``.csv`` from ``.csv.gz``) and
replaced by the next download of the same URL.

What *is* reused is an unfinished download: bytes go to a partial file whose
name depends only on the URL, with a small JSON sidecar recording the server's
validator (a strong ETag, else Last-Modified). A later attempt, in this run or
in a later one, resumes with ``Range`` + ``If-Range``; a server whose file
changed (or that ignores ranges) answers 200 with the whole body and the
partial restarts from zero. A partial without a validator is resumed only
within the run that wrote it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path

import aiohttp

from mining.checkpoint import normalise_dataset_url
from mining.partialdownload import (
    DownloadError,
    DownloadTooLargeError,
    Partial,
    paths_for,
)
from mining.quoting import clean, redact_url
from mining.sizes import format_size

__all__ = ["DownloadError", "DownloadTooLargeError", "normalise_dataset_url", "resolve_dataset"]

logger = logging.getLogger("mining.download")

_CHUNK_BYTES = 256 * 1024
# "Long download" progress: one log line per interval, so short downloads log only the final line.
_PROGRESS_INTERVAL_S = 5.0
_BACKOFF_BASE_S = 0.5
# Request Timeout and Too Many Requests say "try again later", unlike the other 4xx.
_RETRYABLE_4XX = frozenset({408, 429})
_SERVER_ERRORS = range(500, 600)
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class _RetryableError(Exception):
    """A failed attempt worth repeating (connection lost, timeout, 5xx, short body)."""


def resolve_dataset(
    url: str,
    data_dir: Path,
    *,
    timeout: float = 30.0,
    max_attempts: int = 6,
    backoff_cap: float = 30.0,
    max_bytes: int | None = None,
) -> Path:
    """Return a local path to read: file:// URLs and plain paths in place, http(s) downloaded.

    ``timeout`` bounds connecting and each wait for more body bytes (not the whole
    download, which may legitimately take long); ``max_attempts`` counts
    consecutive attempts that brought no new bytes, so a long download over a
    flaky link is not abandoned while it advances. A download larger than
    ``max_bytes`` (a Content-Length, or the bytes received) stops with
    DownloadTooLargeError and leaves nothing on disk; the partial file never
    holds more than ``max_bytes``.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        return _download(
            url, Path(data_dir), timeout, max_attempts, backoff_cap, max_bytes=max_bytes
        )
    if scheme == "file":
        return _readable_file(_file_url_path(url, parts), url)
    if scheme and "://" in url:
        raise DownloadError(
            f"unsupported dataset URL scheme {scheme!r} in {redact_url(url)} "
            "(use http, https, file or a path)"
        )
    return _readable_file(Path(url).expanduser(), url)


def _file_url_path(url: str, parts: urllib.parse.SplitResult) -> Path:
    if parts.netloc not in ("", "localhost"):
        host = urllib.parse.urlsplit(redact_url(url)).netloc
        raise DownloadError(f"file URL names a remote host {host!r}: {redact_url(url)}")
    if parts.query or parts.fragment:
        raise DownloadError(
            f"file URL has '?' or '#' (percent-encode them as %3F, %23): {redact_url(url)}"
        )
    return Path(urllib.request.url2pathname(parts.path))


def _readable_file(path: Path, url: str) -> Path:
    if not path.exists():
        origin = "" if str(path) == url else f" (from {redact_url(url)})"
        raise DownloadError(f"dataset file not found: {path}{origin}")
    if not path.is_file():
        raise DownloadError(f"dataset path is not a regular file: {path}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DownloadError(f"cannot read dataset file {path}: {exc.strerror or exc}") from exc
    return path.resolve()


def _download(
    url: str,
    data_dir: Path,
    timeout: float,
    max_attempts: int,
    backoff_cap: float,
    *,
    max_bytes: int | None,
) -> Path:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create data directory {data_dir}: {exc.strerror}") from exc
    paths = paths_for(url, data_dir)
    try:
        partial = Partial.acquire(url, paths, max_bytes)
    except OSError as exc:
        raise DownloadError(f"cannot write {paths.partial}: {exc.strerror or exc}") from exc
    started = time.monotonic()
    with partial:
        try:
            asyncio.run(_fetch(url, partial, timeout, max_attempts, backoff_cap))
            size = partial.finish(paths.final)
        except OSError as exc:
            # Network errors are handled inside; what reaches here is the local disk failing.
            message = f"cannot store the download in {data_dir}: {exc.strerror or exc}"
            raise DownloadError(message) from exc
    seconds = time.monotonic() - started
    logger.info(
        "downloaded %s: %d bytes in %.2f s to %s", redact_url(url), size, seconds, paths.final
    )
    return paths.final


def _validator(headers: Mapping[str, str]) -> str | None:
    """A validator usable in If-Range: a strong ETag, else Last-Modified."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified") or None


def _reason(response: aiohttp.ClientResponse) -> str:
    """The server's reason phrase, which may hold anything (terminal escapes included)."""
    return clean(response.reason or "", 60)


def _refuse_too_large(partial: Partial, total: int | None, url: str) -> None:
    """Refuse at once a body whose announced size is over the limit."""
    if partial.max_bytes is not None and total is not None and total > partial.max_bytes:
        partial.restart()
        raise DownloadTooLargeError(
            f"{redact_url(url)} is {total} bytes, larger than the download limit of "
            f"{format_size(partial.max_bytes)}: not downloaded"
        )


def _one_line(text: str) -> str:
    """Error texts from libraries may span lines; the user gets one."""
    return " ".join(text.split())


def _backoff_delay(failures: int, cap: float) -> float:
    """Capped exponential backoff with jitter (half fixed, half random), so retries spread out."""
    delay = min(cap, _BACKOFF_BASE_S * 2.0 ** (failures - 1))
    return delay / 2 + random.random() * delay / 2


async def _fetch(
    url: str, partial: Partial, timeout: float, max_attempts: int, backoff_cap: float
) -> None:
    client_timeout = aiohttp.ClientTimeout(
        total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
    )
    # Explicit for the reader: certificates and host names are verified (the original did not).
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context())
    async with aiohttp.ClientSession(
        timeout=client_timeout,
        connector=connector,
        # Store the resource's own bytes: Content-Length and ranges count them, not decoded ones.
        auto_decompress=False,
        headers={"Accept-Encoding": "identity"},
    ) as session:
        failures = 0
        most_bytes = partial.size()
        while True:
            try:
                await _attempt(session, url, partial)
                return
            except _RetryableError as exc:
                problem = str(exc)
            except aiohttp.ClientConnectorCertificateError as exc:
                raise DownloadError(
                    _one_line(f"TLS certificate of {redact_url(url)} not trusted: {exc}")
                ) from exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                problem = _one_line(f"{type(exc).__name__}: {exc}")
            except TimeoutError:
                problem = f"no data for {timeout:g} s"
            except aiohttp.ClientError as exc:
                raise DownloadError(
                    _one_line(f"cannot download {redact_url(url)}: {type(exc).__name__}: {exc}")
                ) from exc
            size = partial.size()
            if size > most_bytes:
                most_bytes, failures = size, 0
            failures += 1
            if failures >= max_attempts:
                raise DownloadError(
                    f"cannot download {redact_url(url)}: {problem} "
                    f"({failures} attempts without progress)"
                )
            delay = _backoff_delay(failures, backoff_cap)
            logger.warning(
                "download of %s failed (%s) at %d bytes; retrying in %.2f s",
                redact_url(url),
                problem,
                size,
                delay,
            )
            await asyncio.sleep(delay)


async def _attempt(session: aiohttp.ClientSession, url: str, partial: Partial) -> None:
    """One request; returns when the partial holds the complete body."""
    offset = partial.resume_offset()
    headers = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if partial.validator:
            headers["If-Range"] = partial.validator
    async with session.get(url, headers=headers) as response:
        status = response.status
        if status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE and offset:
            _finish_or_restart_after_416(response, partial, offset)
            return
        if status in _SERVER_ERRORS or status in _RETRYABLE_4XX:
            raise _RetryableError(f"HTTP {status} {_reason(response)}")
        if status >= HTTPStatus.BAD_REQUEST:
            # Past 599 is no HTTP status (RFC 9110 15): a broken server, not a busy one.
            partial.discard()
            raise DownloadError(f"HTTP {status} {_reason(response)} for {redact_url(url)}")
        if status == HTTPStatus.PARTIAL_CONTENT and offset:
            expected = _expected_total_for_range(response, partial, offset)
            _refuse_too_large(partial, expected, url)
        elif status == HTTPStatus.OK:
            if offset:
                logger.info(
                    "%s sent the whole file instead of a range; restarting at 0", redact_url(url)
                )
                partial.restart()
            expected = response.content_length
            _refuse_too_large(partial, expected, url)
            partial.record_full_response(_validator(response.headers), expected)
        else:
            raise DownloadError(
                f"unexpected HTTP {status} {_reason(response)} for {redact_url(url)}"
            )
        progress = _Progress(url, expected)
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            partial.write(chunk)
            progress.update(partial.size())
    size = partial.size()
    if expected is not None and size != expected:
        if size > expected:
            # More bytes than the file has: the partial cannot be trusted, start over.
            partial.restart()
        raise _RetryableError(f"received {size} of {expected} bytes")


def _expected_total_for_range(
    response: aiohttp.ClientResponse, partial: Partial, offset: int
) -> int | None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match or match.group(1) is None or int(match.group(1)) != offset:
        partial.restart()
        raise _RetryableError(f"bad Content-Range for a resume at {offset}: {match and match[0]}")
    total = None if match.group(3) == "*" else int(match.group(3))
    if partial.total is not None and total is not None and total != partial.total:
        # The file changed size under us although the validator matched: never splice.
        partial.restart()
        raise _RetryableError(f"file size changed from {partial.total} to {total} bytes")
    if total is not None:
        return total
    length = response.content_length
    return None if length is None else offset + length


def _finish_or_restart_after_416(
    response: aiohttp.ClientResponse, partial: Partial, offset: int
) -> None:
    """Range Not Satisfiable: complete if the partial already has every byte, else start over."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    total = int(match.group(3)) if match and match.group(3) != "*" else None
    if total == offset and partial.total in (None, total):
        return
    partial.restart()
    raise _RetryableError(f"server cannot serve bytes from {offset} (size {total}); restarting")


class _Progress:
    """Logs how far a long download got, at most once per interval."""

    def __init__(self, url: str, total: int | None) -> None:
        self._url = redact_url(url)
        self._total = total
        self._started = time.monotonic()
        self._last_log = self._started

    def update(self, size: int) -> None:
        now = time.monotonic()
        if now - self._last_log < _PROGRESS_INTERVAL_S:
            return
        self._last_log = now
        if self._total:
            logger.info(
                "downloading %s: %d of %d bytes (%.0f %%) after %.1f s",
                self._url,
                size,
                self._total,
                100 * size / self._total,
                now - self._started,
            )
        else:
            logger.info(
                "downloading %s: %d bytes after %.1f s", self._url, size, now - self._started
            )
