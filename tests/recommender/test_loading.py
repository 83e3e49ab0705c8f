"""Reading DATA_DIR into a snapshot, without actors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, write_checkpoint
from mining.datadir import generation_filename, generation_files
from mining.rulesfile import RULES_FILENAME, read_rules, write_rules
from recommender.loading import DiskState, LoadError, load_snapshot, observe
from tests.helpers.rules import (
    FIRST_NS,
    VERSION,
    checkpoint_of,
    small_ruleset,
    write_legacy_model,
    write_model,
)


def test_observe_sees_missing_files_and_every_atomic_replace(tmp_path: Path) -> None:
    assert observe(tmp_path) == DiskState(checkpoint=None, rules=None, generations=())
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
    with pytest.raises(LoadError, match=r"neither rules-\d+\.cbor nor rules\.cbor is in"):
        load_snapshot(tmp_path, checkpoint)
    (tmp_path / RULES_FILENAME).write_bytes(b"\xa1")
    with pytest.raises(LoadError, match="not valid CBOR"):
        load_snapshot(tmp_path, checkpoint)


def test_the_checkpoint_names_the_generation_to_load(tmp_path: Path) -> None:
    write_model(tmp_path, small_ruleset(FIRST_NS))
    newer = small_ruleset(FIRST_NS + 1)
    # As a kill right after the checkpoint's rename leaves DATA_DIR: rules.cbor still old.
    write_rules(tmp_path / generation_filename(FIRST_NS + 1), newer)
    write_checkpoint(tmp_path / CHECKPOINT_FILENAME, checkpoint_of(newer))
    assert read_rules(tmp_path / RULES_FILENAME).header.generated_ns == FIRST_NS
    snapshot = load_snapshot(tmp_path, checkpoint_of(newer))
    assert snapshot.generated_ns == FIRST_NS + 1


def test_rules_cbor_alone_is_loaded_when_there_is_no_generation_file(tmp_path: Path) -> None:
    checkpoint = write_legacy_model(tmp_path, small_ruleset())
    assert generation_files(tmp_path) == []
    assert load_snapshot(tmp_path, checkpoint).generated_ns == FIRST_NS


def test_a_damaged_generation_file_falls_back_to_a_good_copy_in_rules_cbor(
    tmp_path: Path,
) -> None:
    checkpoint = write_legacy_model(tmp_path, small_ruleset())
    (tmp_path / generation_filename(FIRST_NS)).write_bytes(b"\xa1")
    assert load_snapshot(tmp_path, checkpoint).generated_ns == FIRST_NS
    (tmp_path / RULES_FILENAME).unlink()
    with pytest.raises(LoadError, match="not valid CBOR"):
        load_snapshot(tmp_path, checkpoint)


def test_observe_sees_the_generation_files_and_a_permission_change(tmp_path: Path) -> None:
    write_model(tmp_path, small_ruleset())
    first = observe(tmp_path)
    assert [name for name, _ in first.generations] == [generation_filename(FIRST_NS)]
    (tmp_path / generation_filename(FIRST_NS)).chmod(0o000)
    assert observe(tmp_path) != first
