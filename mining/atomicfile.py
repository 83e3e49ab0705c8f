"""Atomic file replacement: a reader never sees a partial file under the final name."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Persist a rename: fsync the directory entry table."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temporary(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new, fsynced ``name.tmp-<random>`` next to ``path``; return its path.

    For callers that rename the file into place themselves, as the steps of a commit
    (``mining.datadir``).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{secrets.token_hex(6)}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via ``name.tmp-<random>``, fsync, rename, fsync the directory."""
    path = Path(path)
    tmp = write_temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        # Failed half-way: the final name still holds the previous file.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)
