"""The mining job: skip when up to date, else fetch, read, mine, derive rules, commit.

The commit (``mining.datadir``) writes the rules under their generation's name, then the
checkpoint (the commit marker), then makes ``rules.cbor`` name them and removes the previous
generation: a kill between any two steps leaves a checkpoint whose rules are on disk, and the
next run completes an interrupted commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import signal
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, CheckpointError, read_checkpoint
from mining.datadir import (
    StepHook,
    commit_rules,
    finish_commit,
    generation_files,
    generation_of,
    temporary_files,
)
from mining.errors import (
    DatasetUnavailableError,
    MemoryBudgetError,
    MiningInputError,
    OutputError,
    SettingsError,
)
from mining.freshness import check_freshness, describe_parameters
from mining.guard import report, run_guarded
from mining.memory import DEFAULT_SHARE, memory_limits, release_free_memory, tree_memory
from mining.pipeline import ADVICE, MinedRules, memory_budget, mine_ruleset
from mining.quoting import redact_url
from mining.rulesfile import (
    RULES_FILENAME,
    RuleSet,
    RulesFileError,
    encode_rules,
)
from mining.settings import INPUT_SHARE_OF_BUDGET, Settings
from mining.sizes import format_size
from mining.version import __version__

logger = logging.getLogger("mining")

# Held (flock) for the whole run, so two jobs on one DATA_DIR take turns; the
# second then usually finds the rules up to date. The kernel drops it on any exit.
LOCK_FILENAME = ".mining.lock"
# Encoding the rules file holds each packed array about three times: the array, its bytes
# for the CBOR tag, and the encoded document.
ENCODE_COPIES = 3

# A test hook, not a setting: with MINING_TEST_KILL_AT_COMMIT_STEP=k the job SIGKILLs itself
# right after step k of the commit (0: before anything is written), so that tests can show that
# a kill between any two steps leaves rules to serve. It can do nothing an outside `kill -9`
# cannot, and the commit is built to survive that at every step.
KILL_HOOK_VARIABLE = "MINING_TEST_KILL_AT_COMMIT_STEP"


@dataclass(frozen=True)
class JobOutcome:
    """What one run of the job did."""

    skipped: bool
    rules: int
    generated_ns: int


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
    for leftover in temporary_files(data_dir):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            logger.info("removed %s, left by an interrupted run", leftover.name)


def _finish_interrupted_commit(data_dir: Path, committed: Path) -> None:
    """Complete the commit of a killed run: ``rules.cbor``, older generations, temporaries."""
    _remove_leftovers(data_dir)
    try:
        if generation_of(committed.name) is not None:
            changed = finish_commit(data_dir, committed)
        else:
            # rules.cbor itself is committed (an older job wrote it): no generation is.
            changed = []
            for orphan in generation_files(data_dir):
                orphan.unlink(missing_ok=True)
                changed.append(f"removed {orphan.name}")
    except OSError as exc:
        raise OutputError(f"cannot write to {data_dir}: {exc.strerror or exc}") from exc
    if changed:
        logger.info("finished the commit of an interrupted run: %s", "; ".join(changed))


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


def _kill_hook() -> StepHook:
    """The commit's step hook: SIGKILL after the step KILL_HOOK_VARIABLE names, if set."""
    raw = os.environ.get(KILL_HOOK_VARIABLE, "").strip()
    if not raw:
        return lambda _step: None
    if not raw.isdigit():
        raise SettingsError(f"{KILL_HOOK_VARIABLE}={raw!r} is not a step number (a test hook)")
    target, steps = int(raw), itertools.count()

    def after_step(step: str) -> None:
        if next(steps) == target:
            logger.warning("test hook %s: killing the job after step %s", KILL_HOOK_VARIABLE, step)
            os.kill(os.getpid(), signal.SIGKILL)

    return after_step


def _refuse_empty(settings: Settings, ruleset: RuleSet) -> None:
    """Zero rules is almost always a support or confidence set too high: say so, change nothing."""
    if ruleset.header.rule_count or settings.allow_empty_rules:
        return
    try:
        kept = f"the rules of {read_checkpoint(settings.data_dir / CHECKPOINT_FILENAME).model_date}"
        kept += " stay in place"
    except CheckpointError:
        kept = "nothing was written"
    h = ruleset.header
    raise MiningInputError(
        f"the dataset gives 0 rules with {describe_parameters(h.parameters)} "
        f"({h.transactions} playlists, {h.song_count} songs): {kept}; "
        "lower MIN_SUPPORT or MIN_CONFIDENCE, or set ALLOW_EMPTY_RULES=1 to commit an empty "
        "rule set (the server then answers with the most popular songs only)"
    )


def _commit(settings: Settings, ruleset: RuleSet, checkpoint: Checkpoint) -> int:
    """Commit the rules and the checkpoint (see mining.datadir); return the rules' bytes."""
    _refuse_empty(settings, ruleset)
    try:
        data = encode_rules(ruleset)
    except RulesFileError as exc:
        # What a reader would refuse is never written (see rulesfile.check_size).
        raise MiningInputError(
            f"these rules cannot be written: {exc}; raise MIN_SUPPORT or MIN_CONFIDENCE for "
            "fewer rules"
        ) from exc
    data_dir = settings.data_dir
    try:
        commit_rules(data_dir, data, checkpoint, _kill_hook())
    except OSError as exc:
        raise OutputError(f"cannot write to {data_dir}: {exc.strerror or exc}") from exc
    return len(data)


def _read_and_mine(path: Path, downloaded: bool, settings: Settings, limit: int) -> MinedRules:
    """The guarded worker's part: read the dataset and mine it (no output is written here)."""
    from mining.reader import read_playlists  # noqa: PLC0415
    from mining.transactions import read_summary  # noqa: PLC0415

    report("read", f"reading {path}")
    started = time.perf_counter()
    playlist_file = read_playlists(path, settings.input_limit(limit))
    if downloaded:
        # Read into memory now; the shared volume keeps only the rules (a later run that must
        # mine downloads afresh anyway).
        path.unlink(missing_ok=True)
    release_free_memory()
    logger.info("%s", read_summary(playlist_file, time.perf_counter() - started))
    return mine_ruleset(playlist_file.transactions, settings, limit=limit)


def _check_room_to_write(ruleset: RuleSet, limit: int) -> None:
    """Refuse before encoding when the rules file cannot be built within the budget."""
    arrays = sum(
        a.nbytes
        for a in (
            ruleset.antecedent_offsets,
            ruleset.antecedent_songs,
            ruleset.consequents,
            ruleset.rule_counts,
            ruleset.antecedent_counts,
        )
    )
    # Encoding copies each array into a CBOR byte string and then into the document.
    needed = tree_memory(os.getpid()) + ENCODE_COPIES * arrays
    if needed > limit:
        raise MemoryBudgetError(
            f"memory budget exceeded before writing: {ruleset.header.rule_count:,} rules need "
            f"about {format_size(needed)} to encode, over the {format_size(limit)} budget "
            f"(MINING_MEMORY_LIMIT); {ADVICE}"
        )


def _spark_source(settings: Settings) -> tuple[str | Path, bool]:
    """What MINING_ENGINE=spark reads: the fetched file, or a Hadoop URL Spark reads itself."""
    from mining.spark import is_job_readable  # noqa: PLC0415

    if is_job_readable(settings.dataset_url):
        return _fetch(settings)
    logger.info("download: not needed, Spark reads %s itself", redact_url(settings.dataset_url))
    return settings.dataset_url, False


def _mine(settings: Settings, url: str) -> JobOutcome:
    if settings.engine == "spark":
        # Spark reads the dataset itself (on a cluster's executors when it has them).
        from mining.spark import read_and_mine  # noqa: PLC0415

        source, downloaded = _spark_source(settings)
        worker: Callable[[Any, bool, Settings, int], MinedRules] = read_and_mine
    else:
        source, downloaded = _fetch(settings)
        worker = _read_and_mine
    limit = memory_budget(settings)
    if settings.memory_limit is None:
        logger.info(
            "memory: budget %s, %d%% of the memory this process may use (%s); "
            "MINING_MEMORY_LIMIT sets it",
            format_size(limit),
            round(DEFAULT_SHARE * 100),
            memory_limits().describe(),
        )
    else:
        logger.info("memory: budget %s (MINING_MEMORY_LIMIT)", format_size(limit))
    if settings.max_input_bytes is None:
        logger.info(
            "input: at most %s of CSV text, %d%% of the budget; MAX_INPUT_SIZE sets it",
            format_size(settings.input_limit(limit)),
            round(INPUT_SHARE_OF_BUDGET * 100),
        )
    guarded = run_guarded(
        worker,
        source,
        downloaded,
        settings,
        limit,
        limit=limit,
        advice=ADVICE,
        heartbeat_seconds=settings.heartbeat_seconds,
    )
    mined = guarded.value
    logger.info(
        "memory: peak %s resident in the worker, %s in all the job's processes as polled "
        "(estimated: %s for mining over the data read), budget %s",
        format_size(guarded.worker_peak_rss),
        format_size(guarded.peak_tree_bytes),
        format_size(mined.estimated_bytes),
        format_size(limit),
    )

    started = time.perf_counter()
    _check_room_to_write(mined.ruleset, limit)
    # One clock reading for both files: the server checks that they agree.
    generated_ns = time.time_ns()
    ruleset = replace(
        mined.ruleset, header=replace(mined.ruleset.header, generated_ns=generated_ns)
    )
    size = _commit(settings, ruleset, Checkpoint(__version__, url, generated_ns))
    logger.info(
        "write: %d bytes to %s, then %s, in %.2f s",
        size,
        settings.data_dir / RULES_FILENAME,
        CHECKPOINT_FILENAME,
        time.perf_counter() - started,
    )
    return JobOutcome(skipped=False, rules=ruleset.header.rule_count, generated_ns=generated_ns)


def run_job(settings: Settings) -> JobOutcome:
    """Make DATA_DIR hold the rules ``settings`` ask for; raise a MiningError if it cannot."""
    started = time.perf_counter()
    url = settings.normalised_url
    with _exclusive(settings.data_dir):
        freshness = check_freshness(settings)
        if freshness.header is not None and freshness.rules_path is not None:
            _finish_interrupted_commit(settings.data_dir, freshness.rules_path)
            logger.info("up to date: %s; nothing to do", freshness.detail)
            return JobOutcome(True, freshness.header.rule_count, freshness.header.generated_ns)
        logger.info("not up to date, mining: %s", freshness.detail)
        _remove_leftovers(settings.data_dir)
        outcome = _mine(settings, url)
    logger.info("done: %d rules in %.2f s", outcome.rules, time.perf_counter() - started)
    return outcome
