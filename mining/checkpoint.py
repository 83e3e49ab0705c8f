"""The checkpoint file: one line ``<version> <dataset URL> <generation ns>``, the commit marker."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from mining.atomicfile import atomic_write_bytes
from mining.quoting import excerpt
from mining.regularfile import read_regular

CHECKPOINT_FILENAME = "ml_processor_checkpoint.txt"
# A checkpoint is one short line; anything larger is not ours.
MAX_CHECKPOINT_BYTES = 64 * 1024
# The one line: version, dataset URL, rules generation.
CHECKPOINT_FIELDS = 3


class CheckpointError(ValueError):
    """The checkpoint is missing, unreadable or not of the documented form."""


@dataclass(frozen=True)
class Checkpoint:
    """What the last successful mining run committed."""

    version: str
    dataset_url: str
    generated_ns: int

    def to_line(self) -> str:
        """The exact line written to the file (with trailing newline)."""
        return f"{self.version} {self.dataset_url} {self.generated_ns}\n"

    @property
    def model_date(self) -> str:
        """Generation time in UTC as ``YYYY-MM-dd HH:mm:ss.SSSSSS``."""
        return format_model_date(self.generated_ns)


def format_model_date(generated_ns: int) -> str:
    """Nanoseconds since the epoch → ``YYYY-MM-dd HH:mm:ss.SSSSSS`` in UTC (truncated to µs)."""
    seconds, ns = divmod(generated_ns, 1_000_000_000)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(microseconds=ns // 1000)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def normalise_dataset_url(url: str) -> str:
    """A plain path becomes an absolute percent-encoded ``file://`` URL; URLs stay as they are.

    The checkpoint line is split on spaces, so the URL must never contain one.
    """
    parts = urllib.parse.urlsplit(url)
    # Any other scheme:// URL stays a URL too (Spark's Hadoop filesystems: s3a://bucket/key).
    hadoop = bool(parts.scheme) and url.lower().startswith(f"{parts.scheme}://")
    if parts.scheme in ("http", "https", "file") or hadoop:
        if any(ch.isspace() for ch in url):
            return urllib.parse.quote(url, safe=":/?#[]@!$&'()*+,;=%~")
        return url
    return Path(url).expanduser().resolve().as_uri()


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse the checkpoint's content; raise CheckpointError naming what is wrong."""
    lines = text.splitlines()
    if len(lines) != 1:
        raise CheckpointError(f"checkpoint must be exactly one line, found {len(lines)}")
    fields = lines[0].split(" ")
    if len(fields) != CHECKPOINT_FIELDS or not all(fields):
        raise CheckpointError(
            f"checkpoint line must be '<version> <url> <ns>', found {len(fields)} fields"
        )
    version, url, ns_text = fields
    if not ns_text.isdigit():
        raise CheckpointError(f"checkpoint generation time is not an integer: {excerpt(ns_text)}")
    return Checkpoint(version=version, dataset_url=url, generated_ns=int(ns_text))


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and parse a checkpoint file (a regular file of at most MAX_CHECKPOINT_BYTES)."""
    try:
        raw = read_regular(path, MAX_CHECKPOINT_BYTES)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"checkpoint {path} is not UTF-8") from exc
    return parse_checkpoint(text)


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Atomically write the checkpoint (validated by a round trip first)."""
    line = checkpoint.to_line()
    if parse_checkpoint(line) != checkpoint:
        raise CheckpointError(f"checkpoint fields would not survive a round trip: {checkpoint}")
    atomic_write_bytes(Path(path), line.encode("utf-8"))
