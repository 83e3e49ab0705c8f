"""The guard: a forked worker whose whole process tree is held to a memory limit."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mining.errors import MemoryBudgetError, MiningInputError
from mining.guard import guard_pid, report, run_guarded
from mining.memory import MIB, tree_memory

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def test_the_value_comes_back_with_the_memory_seen() -> None:
    def work(size: int) -> tuple[int, int]:
        block = bytearray(size)
        block[::4096] = b"x" * len(block[::4096])
        return len(block), guard_pid()

    limit = tree_memory(os.getpid()) + 512 * MIB
    guarded = run_guarded(work, 64 * MIB, limit=limit)
    assert guarded.value == (64 * MIB, os.getpid())
    assert guarded.worker_peak_rss >= 64 * MIB
    assert 0 < guarded.peak_tree_bytes <= limit
    # Outside a worker the budget's root is the process itself, and report does nothing.
    assert guard_pid() == os.getpid()
    report("phase", "nothing to tell")


def test_a_mining_error_keeps_its_kind_and_exit_code() -> None:
    def fail() -> None:
        raise MiningInputError("playlists.csv: no 'pid' column in the header")

    with pytest.raises(MiningInputError, match="no 'pid' column") as caught:
        run_guarded(fail, limit=4096 * MIB)
    assert caught.value.exit_code == 3


def test_a_bug_in_the_worker_comes_back_with_its_traceback() -> None:
    class UnpicklableError(Exception):
        def __reduce__(self) -> tuple[object, ...]:
            raise TypeError("cannot pickle")

    def fail() -> None:
        raise UnpicklableError("broken invariant")

    with pytest.raises(RuntimeError, match="broken invariant") as caught:
        run_guarded(fail, limit=4096 * MIB)
    assert "Traceback" in str(caught.value)


def test_a_memory_error_in_the_worker_is_a_budget_error() -> None:
    def fail() -> None:
        report("mine", "mining the impossible")
        raise MemoryError

    with pytest.raises(MemoryBudgetError, match=r"out of memory .* while mining the impossible"):
        run_guarded(fail, limit=4096 * MIB, advice="raise MIN_SUPPORT")


def grow(step: int, seconds: float) -> None:
    """Touch ``step`` more bytes every 10 ms, in a grandchild too, until killed."""
    report("mine", "growing on purpose")
    helper = subprocess.Popen(
        [sys.executable, "-c", "import time; b = bytearray(80 << 20); time.sleep(600)"]
    )
    Path(os.environ["GUARD_TEST_PIDS"]).write_text(f"{os.getpid()} {helper.pid}")
    blocks = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        block = bytearray(step)
        block[::4096] = b"x" * len(block[::4096])
        blocks.append(block)
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def test_past_the_limit_the_whole_tree_is_killed_within_a_small_overshoot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pids_file = tmp_path / "pids"
    monkeypatch.setenv("GUARD_TEST_PIDS", str(pids_file))
    limit = tree_memory(os.getpid()) + 400 * MIB
    started = time.monotonic()
    with (
        caplog.at_level(logging.INFO, logger="mining"),
        pytest.raises(MemoryBudgetError) as caught,
    ):
        # ~800 MiB/s, faster than any engine was measured to grow (620 MiB/s).
        run_guarded(grow, 8 * MIB, 60.0, limit=limit, advice="lower MAX_LEN", heartbeat_seconds=0.2)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith("memory budget exceeded: the job grew past")
    assert "while growing on purpose; lower MAX_LEN" in message
    assert "\n" not in message
    assert elapsed < 30
    worker, helper = map(int, pids_file.read_text().split())
    assert not _alive(worker)
    # The grandchild (a JVM, for an engine that runs one) is killed with the worker.
    deadline = time.monotonic() + 5
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(helper)
    assert "heartbeat: growing on purpose" in caplog.text


OVERSHOOT = textwrap.dedent(
    """
    import os, resource, sys, time
    sys.path.insert(0, {repo!r})
    from mining.errors import MemoryBudgetError
    from mining.guard import report, run_guarded
    from mining.memory import MIB, tree_memory

    def grow():
        report("mine", "growing")
        blocks = []
        while True:
            block = bytearray(16 * MIB)
            block[::4096] = b"x" * len(block[::4096])
            blocks.append(block)

    limit = tree_memory(os.getpid()) + 300 * MIB
    try:
        run_guarded(grow, limit=limit)
    except MemoryBudgetError:
        pass
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(limit, peak)
    """
)


def test_the_worker_never_gets_far_past_the_limit_at_full_speed() -> None:
    # In a process of its own, so the kernel's peak of its children is the worker's alone.
    repo = str(Path(__file__).resolve().parents[2])
    result = subprocess.run(
        [sys.executable, "-c", OVERSHOOT.format(repo=repo)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    limit, peak = map(int, result.stdout.split())
    # As fast as Python can touch memory (GiB/s): the worker ends within a few polls.
    assert peak < limit + 256 * MIB, (limit // MIB, peak // MIB)


HOLD_AND_DIE = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from mining.guard import run_guarded
    from mining.memory import GIB

    def sleep():
        import os
        print(os.getpid(), flush=True)
        time.sleep(600)

    run_guarded(sleep, limit=64 * GIB)
    """
)


def test_a_worker_does_not_outlive_a_killed_guard() -> None:
    repo = str(Path(__file__).resolve().parents[2])
    guard = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_DIE.format(repo=repo)], stdout=subprocess.PIPE, text=True
    )
    assert guard.stdout is not None
    worker = int(guard.stdout.readline())
    assert _alive(worker)
    guard.send_signal(signal.SIGKILL)
    guard.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)
