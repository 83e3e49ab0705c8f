"""What Spark reads for a source: Hadoop URLs as given, local files checked and decompressed."""

from __future__ import annotations

import contextlib
import logging
import lzma
import secrets
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mining.errors import MiningInputError
from mining.sizes import format_size
from mining.spark.failures import first_line

logger = logging.getLogger("mining.spark")

# Schemes the job reads itself (downloads or local files); any other URL goes to Spark's Hadoop
# filesystems as it is (s3a://, hdfs://, gs://, abfss://, ...).
JOB_SCHEMES = ("", "file", "http", "https")


def is_job_readable(url: str) -> bool:
    """True for what the job fetches itself (paths, file://, http(s)://), False for Hadoop URLs."""
    return urllib.parse.urlsplit(url).scheme.lower() in JOB_SCHEMES


# Not hidden: Spark skips files whose names start with "." or "_".
SPARK_INPUT_PREFIX = "spark-input-"


def _decompressed_for_spark(path: Path, work_dir: Path, max_bytes: int | None) -> Path | None:
    """A plain copy of a compressed local file (gzip or xz, told by content), else None.

    Spark (Hadoop) picks a codec by file name, knows no xz, and cannot bound what it
    decompresses: the job decompresses itself, at most ``max_bytes`` (MAX_INPUT_SIZE) of
    text, into ``work_dir`` (DATA_DIR, which executors on a cluster mount too). The copy is
    the caller's to delete.
    """
    import gzip  # noqa: PLC0415

    from mining.reader import GZIP_MAGIC, XZ_MAGIC  # noqa: PLC0415

    with open(path, "rb") as probe:
        magic = probe.read(len(XZ_MAGIC))
    if magic.startswith(XZ_MAGIC):
        opener: Callable[[Path], Any] = lzma.open
    elif magic.startswith(GZIP_MAGIC):
        opener = gzip.open
    else:
        return None
    target = work_dir / f"{SPARK_INPUT_PREFIX}{secrets.token_hex(6)}.csv"
    try:
        with opener(path) as source, open(target, "xb") as out:
            copied = 0
            while chunk := source.read(1 << 20):
                copied += len(chunk)
                if max_bytes is not None and copied > max_bytes:
                    raise MiningInputError(_too_large(path, f"more than {format_size(max_bytes)}"))
                out.write(chunk)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        target.unlink(missing_ok=True)
        raise MiningInputError(f"{path}: not readable as CSV: {first_line(exc)}") from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _too_large(path: Path, amount: str) -> str:
    return (
        f"{path}: {amount} of CSV text (after decompression), the input limit: raise "
        "MAX_INPUT_SIZE if the dataset is really that large"
    )


def remove_leftover_inputs(work_dir: Path) -> None:
    """Delete decompressed copies left by a killed run (the caller holds DATA_DIR's lock)."""
    for leftover in work_dir.glob(f"{SPARK_INPUT_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            logger.info("removed %s, left by an interrupted run", leftover.name)


def spark_location(
    source: str | Path, work_dir: Path, max_bytes: int | None = None
) -> tuple[str, Path | None]:
    """What Spark should read for ``source``, and a temporary copy to delete afterwards (or None).

    Local files are checked like the reader checks them (empty, binary, not UTF-8, larger than
    ``max_bytes`` of text) and given to Spark as ``file://`` URLs, decompressed first; Hadoop
    URLs (``s3a://`` and the like) go to Spark unchanged, unbounded by ``max_bytes``.
    """
    if isinstance(source, str) and not is_job_readable(source):
        return source, None
    from mining.reader import check_text  # noqa: PLC0415

    path = Path(source)
    if not path.is_file():
        raise MiningInputError(f"{path}: no such file")
    check_text(path)
    copy = _decompressed_for_spark(path, work_dir, max_bytes)
    if copy is None and max_bytes is not None and path.stat().st_size > max_bytes:
        raise MiningInputError(_too_large(path, f"{path.stat().st_size} bytes"))
    return (copy or path.resolve()).as_uri(), copy
