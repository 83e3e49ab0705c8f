"""DATA_DIR's layout and the commit that changes it, shared by the job (writer) and the server.

The files:

- ``ml_processor_checkpoint.txt``, one line ``<version> <dataset URL> <generation ns>``: the
  commit marker. Its generation time names the rules to serve.
- ``rules-<generation ns>.cbor``: the rules of one generation.
- ``rules.cbor``: a hard link to (where links are impossible, a copy of) the rules the
  checkpoint names, for users and tools, once a commit is complete.

The commit is a sequence of single renames and removals, each durable before the next, so a
kill between any two leaves a checkpoint whose rules are on disk:

1. ``rules-<ns>.cbor`` written in full under a temporary name, renamed into place;
2. the checkpoint written in full under a temporary name, renamed into place: the commit;
3. ``rules.cbor`` replaced by a hard link to ``rules-<ns>.cbor``;
4. every other ``rules-*.cbor`` removed.

A reader takes the checkpoint, then ``rules-<ns>.cbor``, or ``rules.cbor`` when that
generation file does not exist (written by version 0.1.0 of the job, or by hand), and
accepts the rules only if their header names the checkpoint's generation, URL and version.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from mining.atomicfile import fsync_directory, write_temporary
from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint
from mining.rulesfile import (
    RULES_FILENAME,
    RuleSet,
    RulesFileError,
    RulesFileMissingError,
    RulesHeader,
    read_rules,
    read_rules_header,
)

_GENERATION = re.compile(r"rules-([0-9]+)\.cbor")
_TEMPORARY = re.compile(r"(.+)\.tmp-[0-9a-f]+")

# Called after each step of a commit with the step's name (the job's test hook uses it).
StepHook = Callable[[str], None]


class NotCommittedError(RulesFileError):
    """A readable rules file that is not the one the checkpoint commits to."""


def generation_filename(generated_ns: int) -> str:
    """The name of the rules file of one generation: ``rules-<ns>.cbor``."""
    return f"rules-{generated_ns}.cbor"


def generation_of(name: str) -> int | None:
    """The generation time in a ``rules-<ns>.cbor`` name; None for any other name."""
    match = _GENERATION.fullmatch(name)
    return int(match.group(1)) if match else None


def is_layout_file(name: str) -> bool:
    """True for the names a reader of DATA_DIR looks at: the checkpoint and the rules files."""
    return name in (CHECKPOINT_FILENAME, RULES_FILENAME) or generation_of(name) is not None


def generation_files(data_dir: Path) -> list[Path]:
    """Every ``rules-<ns>.cbor`` in DATA_DIR (none if it cannot be listed)."""
    try:
        names = os.listdir(data_dir)
    except OSError:
        return []
    return sorted(data_dir / name for name in names if generation_of(name) is not None)


def temporary_files(data_dir: Path) -> list[Path]:
    """The ``<name>.tmp-<random>`` files a killed commit may leave for the layout's files."""
    try:
        names = os.listdir(data_dir)
    except OSError:
        return []
    return sorted(
        data_dir / name
        for name in names
        if (match := _TEMPORARY.fullmatch(name)) and is_layout_file(match.group(1))
    )


def header_mismatches(header: RulesHeader, checkpoint: Checkpoint) -> list[str]:
    """How a rules header differs from the checkpoint it should belong to (empty: it matches)."""
    return [
        f"{what} {theirs!r} in the rules file, {ours!r} in the checkpoint"
        for what, theirs, ours in (
            ("generation time", header.generated_ns, checkpoint.generated_ns),
            ("dataset URL", header.dataset_url, checkpoint.dataset_url),
            ("version", header.package_version, checkpoint.version),
        )
        if theirs != ours
    ]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def candidates(data_dir: Path, checkpoint: Checkpoint) -> list[Path]:
    """Where the rules of ``checkpoint`` may be, in the order a reader tries them."""
    generation = data_dir / generation_filename(checkpoint.generated_ns)
    published = data_dir / RULES_FILENAME
    # rules.cbor is usually a hard link to the generation file: never read the same file twice.
    return [generation] if _same_file(generation, published) else [generation, published]


def read_committed_rules(data_dir: Path, checkpoint: Checkpoint) -> tuple[Path, RuleSet]:
    """The rules ``checkpoint`` commits to and the file they were read from.

    Raise RulesFileError with the first problem met (NotCommittedError for rules of another
    generation) when no candidate holds them.
    """
    problems: list[RulesFileError] = []
    for path in candidates(data_dir, checkpoint):
        try:
            ruleset = read_rules(path)
        except RulesFileError as exc:
            problems.append(exc)
            continue
        mismatches = header_mismatches(ruleset.header, checkpoint)
        if not mismatches:
            return path, ruleset
        problems.append(
            NotCommittedError("rules file does not match the checkpoint: " + "; ".join(mismatches))
        )
    if all(isinstance(problem, RulesFileMissingError) for problem in problems):
        raise RulesFileMissingError(
            f"cannot read rules file: neither {generation_filename(checkpoint.generated_ns)} nor "
            f"{RULES_FILENAME} is in {data_dir}"
        )
    raise next(p for p in problems if not isinstance(p, RulesFileMissingError))


def publishes(data_dir: Path, generation: Path) -> bool:
    """True if ``rules.cbor`` holds the rules of ``generation`` (a link to it, or a copy)."""
    published = data_dir / RULES_FILENAME
    if _same_file(published, generation):
        return True
    try:
        return (
            read_rules_header(published).generated_ns == read_rules_header(generation).generated_ns
        )
    except RulesFileError:
        return False


def _no_hook(_step: str) -> None:
    pass


def commit_rules(
    data_dir: Path, data: bytes, checkpoint: Checkpoint, after_step: StepHook = _no_hook
) -> None:
    """Make ``data`` (an encoded rule set) the committed rules, in the steps the module describes.

    Raise OSError if a step fails; then temporary files are removed and the files in place are
    a committed pair (the previous one, or the new one if the checkpoint was renamed).
    """
    generation = data_dir / generation_filename(checkpoint.generated_ns)
    checkpoint_path = data_dir / CHECKPOINT_FILENAME
    after_step("start")
    _install(generation, data, after_step)
    _install(checkpoint_path, checkpoint.to_line().encode("utf-8"), after_step)
    finish_commit(data_dir, generation, after_step)


def _install(path: Path, data: bytes, after_step: StepHook) -> None:
    """Write ``path`` under a temporary name, rename it into place, make the rename durable."""
    staged = write_temporary(path, data)
    try:
        after_step(f"{path.name} staged")
        os.replace(staged, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
    fsync_directory(path.parent)
    after_step(f"{path.name} renamed")


def finish_commit(data_dir: Path, generation: Path, after_step: StepHook = _no_hook) -> list[str]:
    """Steps 3 and 4 once the checkpoint names ``generation``; return what was changed.

    Also how a later run completes a commit that a kill interrupted.
    """
    changed = []
    if not publishes(data_dir, generation):
        published = data_dir / RULES_FILENAME
        staged = published.with_name(f"{published.name}.tmp-{os.urandom(6).hex()}")
        try:
            try:
                os.link(generation, staged)
            except OSError:
                # A file system without hard links: a copy costs the disk space once more.
                shutil.copyfile(generation, staged)
                with open(staged, "rb") as copy:
                    os.fsync(copy.fileno())
            after_step(f"{RULES_FILENAME} staged")
            os.replace(staged, published)
        finally:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
        fsync_directory(data_dir)
        after_step(f"{RULES_FILENAME} renamed")
        changed.append(f"{RULES_FILENAME} now holds {generation.name}")
    for old in generation_files(data_dir):
        if old.name != generation.name:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
            after_step(f"{old.name} removed")
            changed.append(f"removed {old.name}")
    return changed
