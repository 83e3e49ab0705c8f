"""HTTP content codings, undone with a bound on the output: pure (zlib only).

The server inflates request bodies with it and the client replies, each stopping one byte past
its limit, however far the data would inflate. aiohttp's own decompression runs with the loop's
flow control: the server's, after a 413, to discard the rest of a body, and the client's not
always pausing in time (a 0.5 MB gzip reply has grown the client past 450 MB).
"""

from __future__ import annotations

import zlib

# Content-Encoding values a body may have ("x-gzip" is gzip's old name, RFC 9110 8.4.1).
CONTENT_CODINGS = ("gzip", "deflate", "identity")
_CODING_ALIASES = {"x-gzip": "gzip"}
# A gzip body may be several members back to back (RFC 1952); each costs a decompressor, so a
# body of thousands of empty members cannot keep the loop busy.
MAX_GZIP_MEMBERS = 16


class ContentCodingError(ValueError):
    """A body that cannot be decoded; the message completes "the body is ..."."""


class UnsupportedCodingError(ContentCodingError):
    """A coding this module does not decode (``coding`` names it)."""

    def __init__(self, coding: str, message: str) -> None:
        super().__init__(message)
        self.coding = coding


class InflatedTooLargeError(ContentCodingError):
    """The body inflates past the limit (inflating stopped there)."""


def decode_content(body: bytes, content_encoding: str, limit: int) -> bytes:
    """``body`` with its ``Content-Encoding`` undone, at most ``limit`` bytes of it.

    Raises UnsupportedCodingError for a coding other than gzip, deflate or identity (or more
    than one), InflatedTooLargeError once more than ``limit`` bytes come out, and
    ContentCodingError for data that is not what its coding says.
    """
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    codings = [_CODING_ALIASES.get(c, c) for c in codings if c != "identity"]
    unknown = [c for c in codings if c not in CONTENT_CODINGS]
    if unknown:
        raise UnsupportedCodingError(unknown[0], "is not a supported content coding")
    if len(codings) > 1:
        raise UnsupportedCodingError(
            ", ".join(codings), "a body may be compressed once only (one Content-Encoding)"
        )
    if not codings:
        return body
    if codings[0] == "gzip":
        return _inflate(body, "gzip", zlib.MAX_WBITS | 16, limit)
    # "deflate" is the zlib format (RFC 9110 8.4.1.2), but some senders use raw deflate: a zlib
    # stream's first byte names method 8 in its low bits.
    wbits = zlib.MAX_WBITS if body[:1] and body[0] & 0x0F == zlib.DEFLATED else -zlib.MAX_WBITS
    return _inflate(body, "deflate", wbits, limit)


def _inflate(data: bytes, coding: str, wbits: int, limit: int) -> bytes:
    """Decompress ``data`` (several gzip members in turn), stopping past ``limit`` bytes."""
    out = bytearray()
    for _member in range(MAX_GZIP_MEMBERS):
        decompressor = zlib.decompressobj(wbits)
        try:
            out += decompressor.decompress(data, limit + 1 - len(out))
        except zlib.error:
            raise ContentCodingError(f"not valid {coding} data") from None
        if len(out) > limit:
            raise InflatedTooLargeError(f"inflates to more than {limit} bytes")
        if not decompressor.eof:
            raise ContentCodingError(f"not valid {coding} data: it ends early")
        data = decompressor.unused_data
        if not data:
            return bytes(out)
        if coding != "gzip":
            raise ContentCodingError(f"not valid {coding} data: bytes follow its end")
    raise ContentCodingError(f"made of more than {MAX_GZIP_MEMBERS} gzip members")
