"""Reading DATA_DIR into a snapshot, without actors."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.loading import DiskState, LoadError, load_snapshot, observe
from mining.checkpoint import Checkpoint
from mining.rulesfile import RULES_FILENAME
from tests.helpers.rules import FIRST_NS, VERSION, checkpoint_of, small_ruleset, write_model


def test_observe_sees_missing_files_and_every_atomic_replace(tmp_path: Path) -> None:
    assert observe(tmp_path) == DiskState(checkpoint=None, rules=None)
    write_model(tmp_path, small_ruleset())
    first = observe(tmp_path)
    assert first.checkpoint is not None and first.rules is not None
    assert observe(tmp_path) == first
    write_model(tmp_path, small_ruleset())  # same bytes, new inodes
    second = observe(tmp_path)
    assert second != first
    assert second.checkpoint != first.checkpoint and second.rules != first.rules


def test_load_snapshot_builds_the_index_of_the_committed_rules(tmp_path: Path) -> None:
    checkpoint = write_model(tmp_path, small_ruleset())
    snapshot = load_snapshot(tmp_path, checkpoint)
    assert snapshot.checkpoint == checkpoint
    assert snapshot.header == small_ruleset().header
    assert snapshot.recommender.rule_count == 3


@pytest.mark.parametrize(
    ("checkpoint", "cause"),
    [
        (Checkpoint(VERSION, "file:///data/test%20playlists.csv", FIRST_NS + 1), "generation time"),
        (Checkpoint(VERSION, "file:///elsewhere.csv", FIRST_NS), "dataset URL"),
        (Checkpoint("0.0.1", "file:///data/test%20playlists.csv", FIRST_NS), "version"),
    ],
)
def test_a_rules_file_the_checkpoint_does_not_name_is_refused(
    tmp_path: Path, checkpoint: Checkpoint, cause: str
) -> None:
    write_model(tmp_path, small_ruleset())
    with pytest.raises(LoadError, match=f"does not match the checkpoint: {cause}"):
        load_snapshot(tmp_path, checkpoint)


def test_a_missing_or_damaged_rules_file_is_a_load_error(tmp_path: Path) -> None:
    checkpoint = checkpoint_of(small_ruleset())
    with pytest.raises(LoadError, match="cannot read rules file"):
        load_snapshot(tmp_path, checkpoint)
    (tmp_path / RULES_FILENAME).write_bytes(b"\xa1")
    with pytest.raises(LoadError, match="not valid CBOR"):
        load_snapshot(tmp_path, checkpoint)
