"""Loading a rule set from DATA_DIR into a snapshot, and telling whether the files changed.

What the RuleServer does with DATA_DIR, free of pykka so it is tested directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint
from mining.datadir import generation_files, read_committed_rules
from mining.rulesfile import RULES_FILENAME, RulesFileError
from recommender.engine import Recommender
from recommender.snapshot import Snapshot

# (device, inode, size, mtime, ctime in ns, mode): an atomic replace always changes the inode,
# and a chmod or chown (a permission problem fixed) changes the ctime and maybe the mode.
FileIdentity = tuple[int, int, int, int, int, int]


class LoadError(Exception):
    """The rules could not be loaded; the message is the cause, fit for one log line."""


@dataclass(frozen=True)
class DiskState:
    """Which files a check saw: while this stays the same, a failed load would fail again."""

    checkpoint: FileIdentity | None
    rules: FileIdentity | None
    # Every rules-<ns>.cbor, by name.
    generations: tuple[tuple[str, FileIdentity | None], ...] = ()


def _identity(path: Path) -> FileIdentity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


def observe(data_dir: Path) -> DiskState:
    """Stat the checkpoint and the rules files (a missing or unreadable file is None)."""
    return DiskState(
        checkpoint=_identity(data_dir / CHECKPOINT_FILENAME),
        rules=_identity(data_dir / RULES_FILENAME),
        generations=tuple((path.name, _identity(path)) for path in generation_files(data_dir)),
    )


def load_snapshot(data_dir: Path, checkpoint: Checkpoint) -> Snapshot:
    """Read the rules ``checkpoint`` commits to (its generation's file, else rules.cbor), check
    their header against it and build the index."""
    try:
        _, ruleset = read_committed_rules(data_dir, checkpoint)
    except RulesFileError as exc:
        raise LoadError(str(exc)) from exc
    return Snapshot(
        checkpoint=checkpoint,
        header=ruleset.header,
        recommender=Recommender.from_ruleset(ruleset),
    )
