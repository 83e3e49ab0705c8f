"""The RuleServer as a real actor over real files in a temporary DATA_DIR.

Its logic with a fake clock (backoff delays, each parked call's own wait) is tested without
sleeping in test_rule_state.py; these tests run it through the actor and its real timers.
"""

from __future__ import annotations

import logging
import queue
import time
from pathlib import Path
from typing import Any

import cbor2
import pykka
import pytest

from actors import rule_state as rule_state_module
from actors.backoff import Backoff
from actors.messages import CheckRules, GetSnapshot, Ping, SnapshotChanged, Subscribe
from actors.rule_server import RuleServer
from http_api import metrics
from mining.atomicfile import atomic_write_bytes
from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, write_checkpoint
from mining.rulesfile import RULES_FILENAME, encode_rules, write_rules
from recommender.loading import load_snapshot
from recommender.snapshot import Snapshot
from tests.helpers.rules import (
    FIRST_NS,
    checkpoint_of,
    small_ruleset,
    write_model,
)

SECOND_NS = FIRST_NS + 1_000_000_000
THIRD_NS = FIRST_NS + 2_000_000_000


def get_snapshot(server: pykka.ActorRef[Any], wait: float = 5.0) -> Snapshot | None:
    """GetSnapshot with a reply callback, as the frontend does, answered within ``wait`` s."""
    replies: queue.Queue[Snapshot | None] = queue.Queue()
    server.tell(GetSnapshot(reply=replies.put, timeout_seconds=wait))
    return replies.get(timeout=wait + 5)


def check(server: pykka.ActorRef[Any]) -> None:
    """CheckRules, then wait until the RuleServer has handled it."""
    server.tell(CheckRules())
    server.ask(Ping(), timeout=10)


def failures() -> float:
    return metrics.REGISTRY.get_sample_value("recommender_rule_reload_failures_total") or 0.0


class Subscriber(pykka.ThreadingActor):
    """A test double for the frontend: collects the snapshots pushed to it."""

    def __init__(self, received: queue.Queue[Snapshot]) -> None:
        super().__init__()
        self.received = received

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, SnapshotChanged):
            self.received.put(message.snapshot)


def start(data_dir: Path, first_retry: float = 30.0) -> pykka.ActorRef[Any]:
    backoff = Backoff(first=first_retry, cap=first_retry * 4)
    ref = RuleServer.start(data_dir, backoff, reporter=metrics.REPORTER)
    ref.ask(Ping(), timeout=10)
    return ref


def test_a_call_before_any_rules_is_parked_then_answered_by_the_first_load(
    tmp_path: Path,
) -> None:
    server = start(tmp_path)
    replies: queue.Queue[Snapshot | None] = queue.Queue()
    server.tell(GetSnapshot(reply=replies.put, timeout_seconds=30))
    check(server)
    assert replies.empty()
    write_model(tmp_path, small_ruleset())
    check(server)
    snapshot = replies.get(timeout=5)
    assert snapshot is not None
    assert snapshot.generated_ns == FIRST_NS
    assert snapshot.model_date == "2023-11-14 22:13:20.123456"
    assert snapshot.recommender.recommend(["Hey Jude"], 2) == ["Yesterday", "Imagine"]


def test_a_parked_call_is_answered_none_when_its_wait_runs_out(tmp_path: Path) -> None:
    server = start(tmp_path)
    started = time.monotonic()
    assert get_snapshot(server, wait=0.3) is None
    assert 0.25 <= time.monotonic() - started < 3
    assert server.is_alive()


def test_a_call_after_the_load_is_answered_at_once(tmp_path: Path) -> None:
    write_model(tmp_path, small_ruleset())
    server = start(tmp_path)
    check(server)
    snapshot = get_snapshot(server, wait=0.01)
    assert snapshot is not None and snapshot.generated_ns == FIRST_NS


def test_subscribers_get_the_current_snapshot_then_every_new_one(tmp_path: Path) -> None:
    write_model(tmp_path, small_ruleset())
    server = start(tmp_path)
    check(server)
    received: queue.Queue[Snapshot] = queue.Queue()
    server.tell(Subscribe(Subscriber.start(received)))
    assert received.get(timeout=5).generated_ns == FIRST_NS
    write_model(tmp_path, small_ruleset(SECOND_NS))
    check(server)
    assert received.get(timeout=5).generated_ns == SECOND_NS
    check(server)  # nothing changed on disk: no push
    assert received.empty()


def test_a_checkpoint_naming_an_older_model_is_loaded_too(tmp_path: Path) -> None:
    # The checkpoint on disk is the truth: restoring a backup of older rules takes effect.
    write_model(tmp_path, small_ruleset(SECOND_NS))
    server = start(tmp_path)
    check(server)
    write_model(tmp_path, small_ruleset(FIRST_NS))
    check(server)
    snapshot = get_snapshot(server)
    assert snapshot is not None and snapshot.generated_ns == FIRST_NS


def truncated_rules(data_dir: Path) -> str:
    data = encode_rules(small_ruleset(SECOND_NS))
    atomic_write_bytes(data_dir / RULES_FILENAME, data[: len(data) // 2])
    write_checkpoint(data_dir / CHECKPOINT_FILENAME, checkpoint_of(small_ruleset(SECOND_NS)))
    return "not valid CBOR"


def garbage_checkpoint(data_dir: Path) -> str:
    write_rules(data_dir / RULES_FILENAME, small_ruleset(SECOND_NS))
    atomic_write_bytes(data_dir / CHECKPOINT_FILENAME, b"\x00\xffgarbage")
    return "checkpoint unusable"


def header_disagreeing_with_checkpoint(data_dir: Path) -> str:
    write_rules(data_dir / RULES_FILENAME, small_ruleset(SECOND_NS))
    write_checkpoint(data_dir / CHECKPOINT_FILENAME, checkpoint_of(small_ruleset(THIRD_NS)))
    return "does not match the checkpoint"


def unknown_format_version(data_dir: Path) -> str:
    document = cbor2.loads(encode_rules(small_ruleset(SECOND_NS)))
    document["format_version"] = 99
    atomic_write_bytes(data_dir / RULES_FILENAME, cbor2.dumps(document))
    write_checkpoint(data_dir / CHECKPOINT_FILENAME, checkpoint_of(small_ruleset(SECOND_NS)))
    return "format version 99 is not supported"


DAMAGES = [truncated_rules, garbage_checkpoint, header_disagreeing_with_checkpoint]
DAMAGES.append(unknown_format_version)


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
def test_a_failed_load_keeps_the_old_rules_logs_once_and_takes_a_good_write_at_once(
    tmp_path: Path, damage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    write_model(tmp_path, small_ruleset())
    server = start(tmp_path, first_retry=30.0)
    check(server)
    caplog.set_level(logging.INFO, logger="actors.rule_server")
    failed_before = failures()

    cause = damage(tmp_path)
    for _ in range(5):
        check(server)
    snapshot = get_snapshot(server)
    assert snapshot is not None and snapshot.generated_ns == FIRST_NS
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert cause in errors[0].getMessage()
    assert "still serving the rules of 2023-11-14 22:13:20.123456" in errors[0].getMessage()
    # The same broken files are not read again on every check: the backoff (30 s) decides.
    assert failures() == failed_before + 1

    write_model(tmp_path, small_ruleset(THIRD_NS))
    check(server)
    snapshot = get_snapshot(server, wait=0.01)
    assert snapshot is not None and snapshot.generated_ns == THIRD_NS
    assert server.is_alive()


def test_a_vanished_checkpoint_keeps_the_rules_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_model(tmp_path, small_ruleset())
    server = start(tmp_path)
    check(server)
    caplog.set_level(logging.INFO, logger="actors.rule_server")
    (tmp_path / CHECKPOINT_FILENAME).unlink()
    for _ in range(3):
        check(server)
    snapshot = get_snapshot(server)
    assert snapshot is not None and snapshot.generated_ns == FIRST_NS
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "the checkpoint has gone" in warnings[0]


def test_a_reply_that_raises_does_not_kill_the_rule_server(tmp_path: Path) -> None:
    write_model(tmp_path, small_ruleset())
    server = start(tmp_path)
    check(server)

    def broken_reply(_snapshot: Snapshot | None) -> None:
        raise RuntimeError("Event loop is closed")

    server.tell(GetSnapshot(reply=broken_reply, timeout_seconds=1))
    server.tell("an unexpected message")
    assert get_snapshot(server) is not None
    assert server.is_alive()


def test_new_rules_replace_the_old_ones_in_recommendations(tmp_path: Path) -> None:
    write_model(tmp_path, small_ruleset())
    server = start(tmp_path)
    check(server)
    write_model(tmp_path, small_ruleset(SECOND_NS, rules=[((0,), 1, 85, 90)]))
    check(server)
    snapshot = get_snapshot(server)
    assert snapshot is not None
    assert snapshot.recommender.recommend(["Hey Jude"], 1) == ["Let It Be"]


def test_a_commit_landing_during_a_load_is_loaded_without_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_model(tmp_path, small_ruleset(FIRST_NS))
    server = start(tmp_path)
    check(server)
    write_model(tmp_path, small_ruleset(SECOND_NS))
    real_load = load_snapshot
    raced: list[Checkpoint] = []

    def load_after_a_commit(data_dir: Path, checkpoint: Checkpoint) -> Snapshot:
        # The next miner commits right after this check read the checkpoint, and removes the
        # rules that checkpoint named.
        if not raced:
            raced.append(write_model(tmp_path, small_ruleset(THIRD_NS)))
        return real_load(data_dir, checkpoint)

    monkeypatch.setattr(rule_state_module, "load_snapshot", load_after_a_commit)
    caplog.set_level(logging.INFO, logger="actors.rule_server")
    failed_before = failures()
    check(server)
    snapshot = get_snapshot(server)
    assert snapshot is not None and snapshot.generated_ns == THIRD_NS
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert failures() == failed_before
