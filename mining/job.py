"""The mining job: skip when up to date, else fetch, read, mine, derive rules, commit.

The rules file and the checkpoint are both staged (written and fsynced under
temporary names) before either is renamed into place, rules first: the
checkpoint is the commit marker, and a kill at any moment leaves the previous
pair in place except in the window between two back-to-back renames.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mining.atomicfile import fsync_directory, write_temporary
from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, CheckpointError, read_checkpoint
from mining.errors import DatasetUnavailableError, MiningInputError, OutputError
from mining.quoting import redact_url
from mining.rulesfile import (
    RULES_FILENAME,
    MiningParameters,
    RuleSet,
    RulesFileError,
    RulesHeader,
    encode_rules,
    pack_rules,
    read_rules,
)
from mining.settings import Settings
from mining.version import __version__

logger = logging.getLogger("mining")

# Held (flock) for the whole run, so two jobs on one DATA_DIR take turns; the
# second then usually finds the rules up to date. The kernel drops it on any exit.
LOCK_FILENAME = ".mining.lock"


@dataclass(frozen=True)
class Freshness:
    """Whether DATA_DIR already holds the requested rules, and why (not)."""

    up_to_date: bool
    detail: str
    # The header of the rules in place, when they are up to date.
    header: RulesHeader | None = None


@dataclass(frozen=True)
class JobOutcome:
    """What one run of the job did."""

    skipped: bool
    rules: int
    generated_ns: int


def _describe(parameters: MiningParameters) -> str:
    return (
        f"min_support={parameters.min_support!r} min_confidence={parameters.min_confidence!r} "
        f"max_len={parameters.max_len}"
    )


def check_freshness(settings: Settings) -> Freshness:
    """Compare DATA_DIR's checkpoint and rules with what ``settings`` asks for."""
    data_dir = settings.data_dir
    try:
        checkpoint = read_checkpoint(data_dir / CHECKPOINT_FILENAME)
    except CheckpointError as exc:
        return Freshness(False, f"no usable checkpoint ({exc})")
    if checkpoint.version != __version__:
        return Freshness(False, f"checkpoint is from version {checkpoint.version}")
    url = settings.normalised_url
    if checkpoint.dataset_url != url:
        return Freshness(False, f"dataset URL changed (was {redact_url(checkpoint.dataset_url)})")
    try:
        header = read_rules(data_dir / RULES_FILENAME).header
    except RulesFileError as exc:
        return Freshness(False, f"rules file unusable ({exc})")
    if (header.generated_ns, header.dataset_url, header.package_version) != (
        checkpoint.generated_ns,
        checkpoint.dataset_url,
        checkpoint.version,
    ):
        return Freshness(False, "rules file does not match the checkpoint (an interrupted run?)")
    if header.parameters != settings.parameters:
        return Freshness(False, f"parameters changed (were {_describe(header.parameters)})")
    return Freshness(
        True,
        f"{header.rule_count} rules from {redact_url(url)} mined at {checkpoint.model_date} UTC "
        f"with {_describe(header.parameters)}",
        header,
    )


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[None]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot use DATA_DIR {data_dir}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another mining job in %s to finish", data_dir)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_leftovers(data_dir: Path) -> None:
    """Delete temporary files of runs that were killed (safe: we hold the lock)."""
    for name in (RULES_FILENAME, CHECKPOINT_FILENAME):
        for leftover in data_dir.glob(f"{name}.tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                logger.info("removed %s, left by an interrupted run", leftover.name)


def _fetch(settings: Settings) -> tuple[Path, bool]:
    """The local dataset file, and whether it was downloaded into DATA_DIR (ours to delete)."""
    # Imported here: aiohttp is only needed when the job really mines.
    from mining.download import (  # noqa: PLC0415
        DownloadError,
        DownloadTooLargeError,
        resolve_dataset,
    )

    started = time.perf_counter()
    try:
        path = resolve_dataset(
            settings.dataset_url, settings.data_dir, max_bytes=settings.max_download_bytes
        )
    except DownloadTooLargeError as exc:
        raise MiningInputError(
            f"{exc}; raise MAX_DOWNLOAD_SIZE if the dataset is really that large"
        ) from exc
    except DownloadError as exc:
        raise DatasetUnavailableError(str(exc)) from exc
    size, seconds = path.stat().st_size, time.perf_counter() - started
    downloaded = urllib.parse.urlsplit(settings.dataset_url).scheme.lower() in ("http", "https")
    if downloaded:
        logger.info("download: %s, %d bytes, in %.2f s", path, size, seconds)
    else:
        logger.info("download: not needed, reading %s in place (%d bytes)", path, size)
    return path, downloaded


def _commit(data_dir: Path, ruleset: RuleSet, checkpoint: Checkpoint) -> int:
    """Stage rules and checkpoint, then rename rules, then checkpoint; return the rules' bytes."""
    rules_path, checkpoint_path = data_dir / RULES_FILENAME, data_dir / CHECKPOINT_FILENAME
    data = encode_rules(ruleset)
    staged: list[Path] = []
    try:
        staged.append(write_temporary(rules_path, data))
        staged.append(write_temporary(checkpoint_path, checkpoint.to_line().encode("utf-8")))
        os.replace(staged[0], rules_path)
        os.replace(staged[1], checkpoint_path)
        fsync_directory(data_dir)
    except OSError as exc:
        raise OutputError(f"cannot write to {data_dir}: {exc.strerror or exc}") from exc
    finally:
        for path in staged:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return len(data)


def _mine(settings: Settings, url: str) -> JobOutcome:
    # Imported here: pyarrow and the engines take a second or more to import, and a
    # skipped run needs none of them.
    from mining.engines import mine_itemsets  # noqa: PLC0415
    from mining.reader import read_playlists  # noqa: PLC0415
    from mining.rules import derive_rules, min_count  # noqa: PLC0415

    path, downloaded = _fetch(settings)

    started = time.perf_counter()
    playlist_file = read_playlists(path, settings.max_input_bytes)
    if downloaded:
        # Read into memory now; the shared volume keeps only the rules (a later run that must
        # mine downloads afresh anyway).
        path.unlink(missing_ok=True)
    transactions = playlist_file.transactions
    logger.info(
        "read: %d rows (%d skipped: empty pid or track_name), %d playlists, %d songs, in %.2f s",
        playlist_file.rows,
        playlist_file.skipped_rows,
        transactions.playlists,
        len(transactions.song_names),
        time.perf_counter() - started,
    )

    started = time.perf_counter()
    threshold = min_count(settings.min_support, transactions.playlists)
    itemsets = mine_itemsets(transactions, threshold, settings.max_len, settings.engine)
    logger.info(
        "mine: %d frequent itemsets (in >= %d of %d playlists, <= %d songs, engine %s), in %.2f s",
        len(itemsets),
        threshold,
        transactions.playlists,
        settings.max_len,
        settings.engine,
        time.perf_counter() - started,
    )

    started = time.perf_counter()
    rules = derive_rules(itemsets, settings.min_confidence)
    del itemsets
    packed = pack_rules(rules)
    logger.info(
        "rules: %d rules (confidence >= %r), in %.2f s",
        len(rules),
        settings.min_confidence,
        time.perf_counter() - started,
    )

    started = time.perf_counter()
    # One clock reading for both files: the server checks that they agree.
    generated_ns = time.time_ns()
    header = RulesHeader(
        package_version=__version__,
        dataset_url=url,
        generated_ns=generated_ns,
        parameters=settings.parameters,
        engine=settings.engine,
        transactions=transactions.playlists,
        song_count=len(transactions.song_names),
        rule_count=len(rules),
    )
    ruleset = RuleSet(
        header,
        transactions.song_names,
        transactions.song_counts.astype(np.uint32),
        *packed,
    )
    size = _commit(settings.data_dir, ruleset, Checkpoint(__version__, url, generated_ns))
    logger.info(
        "write: %d bytes to %s, then %s, in %.2f s",
        size,
        settings.data_dir / RULES_FILENAME,
        CHECKPOINT_FILENAME,
        time.perf_counter() - started,
    )
    return JobOutcome(skipped=False, rules=len(rules), generated_ns=generated_ns)


def run_job(settings: Settings) -> JobOutcome:
    """Make DATA_DIR hold the rules ``settings`` ask for; raise a MiningError if it cannot."""
    started = time.perf_counter()
    url = settings.normalised_url
    with _exclusive(settings.data_dir):
        freshness = check_freshness(settings)
        if freshness.header is not None:
            logger.info("up to date: %s; nothing to do", freshness.detail)
            return JobOutcome(True, freshness.header.rule_count, freshness.header.generated_ns)
        logger.info("not up to date, mining: %s", freshness.detail)
        _remove_leftovers(settings.data_dir)
        outcome = _mine(settings, url)
    logger.info("done: %d rules in %.2f s", outcome.rules, time.perf_counter() - started)
    return outcome
