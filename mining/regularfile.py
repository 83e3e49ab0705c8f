"""Reading a file of DATA_DIR safely: regular files only, never a blocking open, a size bound.

Anyone who can write DATA_DIR can put anything under a file's name: a FIFO (a plain
``open()`` blocks until a writer appears), a symbolic link to ``/dev/zero`` (endless)
or a sparse file of terabytes. The file is opened with ``O_NONBLOCK``, which makes
opening a FIFO return at once, checked with ``fstat`` to be a regular file, and its size
is checked before a byte is read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


class UnsafeFileError(OSError):
    """The path is not a regular file, or the file is larger than the caller accepts."""


@contextlib.contextmanager
def open_regular(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """Open ``path`` for reading without blocking; yield the file and its size.

    Raise :class:`UnsafeFileError` (an OSError) unless it is a regular file, and
    OSError as ``open`` does (missing, no permission).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise UnsafeFileError(errno.EINVAL, f"{kind}, not a regular file")
        file = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file, st.st_size


def read_exactly(file: BinaryIO, size: int) -> bytes:
    """Read the ``size`` bytes an ``fstat`` promised; refuse a file that grew or shrank since."""
    data = file.read(size)
    if len(data) < size:
        # Rare: one read() stops short only past 2 GiB or when the file shrinks under us.
        parts = [data]
        while (got := sum(len(p) for p in parts)) < size and (more := file.read(size - got)):
            parts.append(more)
        data = b"".join(parts)
    if len(data) != size or file.read(1):
        raise UnsafeFileError(errno.EAGAIN, "changed size while being read")
    return data


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The whole content of the regular file ``path``, refused unread if over ``max_bytes``."""
    with open_regular(path) as (file, size):
        if size > max_bytes:
            raise UnsafeFileError(
                errno.EFBIG, f"{size} bytes, larger than the {max_bytes} accepted"
            )
        return read_exactly(file, size)
