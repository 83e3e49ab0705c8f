"""Compression bombs: small bodies that inflate to very large ones."""

from __future__ import annotations

import functools
import struct
import zlib


@functools.cache
def gzip_bomb(mebibytes: int) -> bytes:
    """A valid gzip member inflating to ``mebibytes`` MiB of zeros, about 1 KiB per MiB.

    Built without compressing it all: after a full flush, deflate starts afresh, so every
    further MiB of zeros compresses to the same bytes.
    """
    mib = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    first = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    last_block = compressor.flush()[:-8]  # without the trailer for the 2 MiB compressed here
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(mib, crc)
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return first + again * (mebibytes - 1) + last_block + trailer
