"""What the RuleServer does with DATA_DIR, kept free of pykka so it is tested directly."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from http_api.recommender import Recommender
from http_api.state import Snapshot
from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint
from mining.rulesfile import RULES_FILENAME, RulesFileError, RulesHeader, read_rules

# (device, inode, size, mtime in ns): an atomic replace always changes the inode.
FileIdentity = tuple[int, int, int, int]


class LoadError(Exception):
    """The rules could not be loaded; the message is the cause, fit for one log line."""


@dataclass(frozen=True)
class DiskState:
    """Which files a check saw: while this stays the same, a failed load would fail again."""

    checkpoint: FileIdentity | None
    rules: FileIdentity | None


def _identity(path: Path) -> FileIdentity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def observe(data_dir: Path) -> DiskState:
    """Stat the checkpoint and the rules file (a missing or unreadable file is None)."""
    return DiskState(
        checkpoint=_identity(data_dir / CHECKPOINT_FILENAME),
        rules=_identity(data_dir / RULES_FILENAME),
    )


def verify_header(header: RulesHeader, checkpoint: Checkpoint) -> None:
    """Raise LoadError unless the rules file is the one the checkpoint commits to."""
    mismatches = [
        f"{what} {theirs!r} in the rules file, {ours!r} in the checkpoint"
        for what, theirs, ours in (
            ("generation time", header.generated_ns, checkpoint.generated_ns),
            ("dataset URL", header.dataset_url, checkpoint.dataset_url),
            ("version", header.package_version, checkpoint.version),
        )
        if theirs != ours
    ]
    if mismatches:
        raise LoadError("rules file does not match the checkpoint: " + "; ".join(mismatches))


def load_snapshot(data_dir: Path, checkpoint: Checkpoint) -> Snapshot:
    """Read the rules file, check it against ``checkpoint`` and build the index."""
    try:
        ruleset = read_rules(data_dir / RULES_FILENAME)
    except RulesFileError as exc:
        raise LoadError(str(exc)) from exc
    verify_header(ruleset.header, checkpoint)
    return Snapshot(
        checkpoint=checkpoint,
        header=ruleset.header,
        recommender=Recommender.from_ruleset(ruleset),
    )
