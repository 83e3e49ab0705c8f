"""Where a download goes: the partial file of one URL, locked against a second downloader,
with a JSON sidecar recording the server's validator so that a later attempt can resume it
(the policy is in mining/download.py's docstring)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from mining.atomicfile import atomic_write_bytes, fsync_directory
from mining.quoting import redact_url
from mining.regularfile import UnsafeFileError, read_regular
from mining.sizes import format_size

# The download's logger: these lines are the download's.
logger = logging.getLogger("mining.download")

# The sidecar holds a URL and a validator: a few hundred bytes; anything larger is not ours.
_SIDECAR_BYTES = 64 * 1024


class DownloadError(Exception):
    """One clear line naming the problem (shown to the user)."""


class DownloadTooLargeError(DownloadError):
    """The dataset is larger than the download limit (nothing of it is kept)."""


@dataclass(frozen=True)
class Paths:
    final: Path
    partial: Path
    sidecar: Path


def paths_for(url: str, data_dir: Path) -> Paths:
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    last_segment = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    # Keep the end of the name: its suffixes tell the reader the compression.
    name = re.sub(r"[^A-Za-z0-9._-]", "_", last_segment)[-80:] or "dataset"
    return Paths(
        final=data_dir / f"download-{key}-{name}",
        partial=data_dir / f".download-{key}-{name}.part",
        sidecar=data_dir / f".download-{key}-{name}.part.json",
    )


class Partial:
    """The partial file of one URL, locked against a second downloader, with its sidecar."""

    def __init__(self, url: str, paths: Paths, file: BinaryIO, max_bytes: int | None) -> None:
        self._url = url
        self._paths = paths
        self._file = file
        self.max_bytes = max_bytes
        # Tracked here because the file object buffers what fstat would not see yet.
        self._size = os.fstat(file.fileno()).st_size
        self.validator: str | None = None
        self.total: int | None = None
        # Bytes written by this run can be resumed even without a validator.
        self._written_here = False

    @classmethod
    def acquire(cls, url: str, paths: Paths, max_bytes: int | None) -> Partial:
        """Open (creating if needed) and lock the partial file of ``url``."""
        # O_NONBLOCK: a FIFO put under the partial's name fails here instead of blocking.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        file = os.fdopen(os.open(paths.partial, flags, 0o644), "ab")
        try:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise UnsafeFileError(errno.EINVAL, "not a regular file")
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise DownloadError(
                f"another process is downloading {redact_url(url)} into {paths.partial.parent}"
            ) from None
        except BaseException:
            file.close()
            raise
        partial = cls(url, paths, file, max_bytes)
        partial._load_sidecar()
        return partial

    def __enter__(self) -> Partial:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
        if self._size == 0:
            # Nothing worth resuming: leave no empty litter in DATA_DIR.
            self.discard()

    def _load_sidecar(self) -> None:
        try:
            saved = json.loads(read_regular(self._paths.sidecar, _SIDECAR_BYTES))
        except (OSError, ValueError):
            saved = {}
        if isinstance(saved, dict) and saved.get("url") == self._url:
            validator, total = saved.get("validator"), saved.get("total")
            self.validator = validator if isinstance(validator, str) and validator else None
            self.total = total if isinstance(total, int) else None

    def size(self) -> int:
        return self._size

    def resume_offset(self) -> int:
        """How many bytes a request may skip; 0 (and an emptied file) when they can't be trusted."""
        size = self.size()
        if size and (self.validator or self._written_here):
            return size
        if size:
            logger.info("discarding %d bytes of an earlier unvalidated download", size)
        self.restart()
        return 0

    def restart(self) -> None:
        self._file.truncate(0)
        self._size = 0

    def record_full_response(self, validator: str | None, total: int | None) -> None:
        """Record a fresh full response: remember how to resume it in a later run."""
        self.validator, self.total = validator, total
        sidecar = {"url": self._url, "validator": validator, "total": total}
        atomic_write_bytes(self._paths.sidecar, json.dumps(sidecar).encode("utf-8"))

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; past ``max_bytes``, empty the partial and raise instead."""
        if self.max_bytes is not None and self._size + len(chunk) > self.max_bytes:
            self.restart()
            raise DownloadTooLargeError(
                f"{redact_url(self._url)} is larger than the download limit of "
                f"{format_size(self.max_bytes)}: stopped after receiving that much, kept nothing"
            )
        self._file.write(chunk)
        self._size += len(chunk)
        self._written_here = True

    def finish(self, final: Path) -> int:
        """Make the complete partial durable and move it to ``final`` atomically."""
        self._file.flush()
        os.fsync(self._file.fileno())
        size = self._size
        os.replace(self._paths.partial, final)
        fsync_directory(final.parent)
        with contextlib.suppress(FileNotFoundError):
            self._paths.sidecar.unlink()
        return size

    def discard(self) -> None:
        """Forget the partial (the URL answered that it is not there)."""
        for path in (self._paths.partial, self._paths.sidecar):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
