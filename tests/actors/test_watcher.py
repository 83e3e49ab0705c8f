"""The RulesWatcher with real watchdog observers on temporary directories.

The RuleServer is replaced by a recorder of the CheckRules it is told, so each test sees
exactly when the watcher asked for a check.
"""

from __future__ import annotations

import errno
import logging
import queue
import shutil
import time
from pathlib import Path
from typing import Any

import pykka
import pytest
from watchdog.events import (
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingEmitter

from actors import watcher as watcher_module
from actors.messages import CheckRules, Ping
from actors.watcher import RulesWatcher, names_watched_file
from mining.checkpoint import CHECKPOINT_FILENAME
from mining.rulesfile import RULES_FILENAME
from tests.helpers.rules import small_ruleset, write_model

Checks = queue.Queue[float]


class Recorder(pykka.ThreadingActor):
    """Stands in for the RuleServer: records when each CheckRules arrived."""

    def __init__(self, checks: Checks) -> None:
        super().__init__()
        self.checks = checks

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, CheckRules):
            self.checks.put(time.monotonic())


def start_watcher(
    data_dir: Path, mode: str = "auto", poll_seconds: float = 60.0
) -> tuple[pykka.ActorRef[Any], Checks]:
    checks: Checks = queue.Queue()
    ref = RulesWatcher.start(data_dir, Recorder.start(checks), mode=mode, poll_seconds=poll_seconds)
    ref.ask(Ping(), timeout=10)
    return ref, checks


def drain(checks: Checks, settle: float = 0.3) -> int:
    """Wait until no check arrived for ``settle`` s; return how many arrived."""
    count = 0
    while True:
        try:
            checks.get(timeout=settle)
        except queue.Empty:
            return count
        count += 1


def observer_kind(ref: pykka.ActorRef[Any]) -> str | None:
    kind: str | None = ref.proxy().observer_kind.get(timeout=10)
    return kind


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_events_are_matched_on_either_end_of_a_move() -> None:
    assert names_watched_file(FileMovedEvent("/d/rules.cbor.tmp-1a2b", "/d/rules.cbor"))
    assert names_watched_file(FileMovedEvent("/d/rules.cbor", "/d/rules.cbor.old"))
    assert names_watched_file(FileModifiedEvent("/d/ml_processor_checkpoint.txt"))
    assert not names_watched_file(FileCreatedEvent("/d/rules.cbor.tmp-1a2b"))
    assert not names_watched_file(FileCreatedEvent("/d/.mining.lock"))
    assert names_watched_file(FileClosedEvent("/d/rules.cbor"))
    assert not names_watched_file(FileOpenedEvent("/d/ml_processor_checkpoint.txt"))
    assert not names_watched_file(FileClosedNoWriteEvent("/d/ml_processor_checkpoint.txt"))
    # The rules of each generation, and a chmod or chown (a permission problem fixed).
    assert names_watched_file(FileMovedEvent("/d/rules-17.cbor.tmp-1a2b", "/d/rules-17.cbor"))
    assert names_watched_file(FileAttribEvent("/d/rules-17.cbor"))
    assert names_watched_file(FileAttribEvent("/d/ml_processor_checkpoint.txt"))
    assert not names_watched_file(FileCreatedEvent("/d/rules-17.cbor.tmp-1a2b"))
    assert not names_watched_file(FileCreatedEvent("/d/rules-.cbor"))


def test_a_model_write_is_one_debounced_check_within_a_fraction_of_a_second(
    tmp_path: Path,
) -> None:
    ref, checks = start_watcher(tmp_path)
    assert observer_kind(ref) == "inotify"
    drain(checks)
    written = time.monotonic()
    write_model(tmp_path, small_ruleset())  # two atomic replaces: ~16 inotify events
    first = checks.get(timeout=5)
    assert first - written < 0.5
    assert drain(checks) <= 1  # the burst may straddle one debounce window, no more


def test_a_permission_change_on_a_rules_file_is_a_check_at_once(tmp_path: Path) -> None:
    write_model(tmp_path, small_ruleset())
    _ref, checks = start_watcher(tmp_path)
    drain(checks)
    changed = time.monotonic()
    (tmp_path / RULES_FILENAME).chmod(0o600)
    assert checks.get(timeout=5) - changed < 0.5
    assert drain(checks) == 0


def test_other_files_in_the_directory_are_ignored(tmp_path: Path) -> None:
    _ref, checks = start_watcher(tmp_path)
    drain(checks)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "rules.cbor.tmp-0000").write_bytes(b"partial")
    assert drain(checks, settle=0.5) == 0


def test_reading_the_files_is_not_a_change(tmp_path: Path) -> None:
    # The RuleServer reads the checkpoint on every check: a read must not trigger another.
    write_model(tmp_path, small_ruleset())
    _ref, checks = start_watcher(tmp_path)
    drain(checks)
    for _ in range(5):
        (tmp_path / CHECKPOINT_FILENAME).read_bytes()
        (tmp_path / RULES_FILENAME).read_bytes()
    assert drain(checks, settle=0.5) == 0


def test_the_periodic_check_runs_without_any_event(tmp_path: Path) -> None:
    _ref, checks = start_watcher(tmp_path, poll_seconds=0.2)
    drain(checks, settle=0.0)
    time.sleep(1.1)
    assert 3 <= drain(checks, settle=0.0) <= 7  # 5 due; timers drift on a busy machine


def assert_events_seen_between_ticks(
    data_dir: Path, checks: Checks, poll_seconds: float, write_model_ns: int
) -> None:
    """Right after a periodic check, write a model: only an event can explain a fast check."""
    drain(checks, settle=0.0)
    checks.get(timeout=poll_seconds * 3)
    written = time.monotonic()
    write_model(data_dir, small_ruleset(write_model_ns))
    assert checks.get(timeout=poll_seconds * 3) - written < poll_seconds / 2


@pytest.mark.slow
def test_a_missing_directory_is_watched_once_it_exists(tmp_path: Path) -> None:
    data_dir = tmp_path / "not-yet"
    ref, checks = start_watcher(data_dir, poll_seconds=1.0)
    assert observer_kind(ref) is None
    assert ref.is_alive()
    data_dir.mkdir()
    wait_for(lambda: observer_kind(ref) == "inotify", timeout=5)
    assert_events_seen_between_ticks(data_dir, checks, 1.0, 1)


@pytest.mark.slow
def test_a_deleted_and_recreated_directory_is_watched_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actors.watcher")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ref, checks = start_watcher(data_dir, poll_seconds=1.0)
    write_model(data_dir, small_ruleset())
    shutil.rmtree(data_dir)
    wait_for(lambda: observer_kind(ref) is None, timeout=5)
    data_dir.mkdir()
    wait_for(lambda: observer_kind(ref) == "inotify", timeout=5)
    assert_events_seen_between_ticks(data_dir, checks, 1.0, 2)
    assert any("was deleted or replaced" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_a_directory_replaced_under_the_same_name_is_watched_again(tmp_path: Path) -> None:
    # mv data data.old && mv data.new data: the old watch follows data.old, not "data".
    data_dir, fresh = tmp_path / "data", tmp_path / "data.new"
    data_dir.mkdir()
    fresh.mkdir()
    ref, checks = start_watcher(data_dir, poll_seconds=1.0)
    data_dir.rename(tmp_path / "data.old")
    fresh.rename(data_dir)
    time.sleep(2.5)  # at least two ticks: the identity check notices the swap
    assert observer_kind(ref) == "inotify"
    assert_events_seen_between_ticks(data_dir, checks, 1.0, 3)


def test_polling_can_be_forced(tmp_path: Path) -> None:
    ref, checks = start_watcher(tmp_path, mode="polling", poll_seconds=0.3)
    assert observer_kind(ref) == "polling"
    drain(checks, settle=0.0)
    write_model(tmp_path, small_ruleset())
    time.sleep(1.0)
    assert drain(checks, settle=0.0) >= 1


class NoInotify(BaseObserver):
    """An observer whose start fails the way inotify does when its limits are exhausted."""

    def __init__(self) -> None:
        super().__init__(PollingEmitter)

    def start(self) -> None:
        raise OSError(errno.EMFILE, "inotify instance limit reached")


def test_inotify_failing_falls_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(watcher_module, "Observer", NoInotify)
    caplog.set_level(logging.INFO, logger="actors.watcher")
    ref, checks = start_watcher(tmp_path, mode="auto", poll_seconds=0.3)
    assert observer_kind(ref) == "polling"
    assert any("inotify unavailable" in r.getMessage() for r in caplog.records)
    drain(checks, settle=0.0)
    write_model(tmp_path, small_ruleset())
    time.sleep(1.0)
    assert drain(checks, settle=0.0) >= 1


def test_inotify_forced_but_failing_is_retried_not_replaced_by_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(watcher_module, "Observer", NoInotify)
    caplog.set_level(logging.INFO, logger="actors.watcher")
    ref, _checks = start_watcher(tmp_path, mode="inotify", poll_seconds=0.2)
    time.sleep(1.0)
    assert observer_kind(ref) is None
    assert ref.is_alive()
    assert any("cannot watch" in r.getMessage() for r in caplog.records)
