"""BackgroundLoads runs reloads at idle priority; LoopShare makes the loop step aside for them.

The last tests run the real thing on one CPU in a subprocess: an event loop kept busy without a
pause, and a load on a thread under SCHED_IDLE, with and without the loop stepping aside.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from actors.background import (
    LOADER_SWITCH_INTERVAL_SECONDS,
    MAX_SHARE,
    BackgroundLoads,
    LoopShare,
)
from recommender.loading import LoadError

ROOT = Path(__file__).resolve().parents[2]


# -- BackgroundLoads --------------------------------------------------------------------------


def test_a_load_runs_on_a_thread_of_its_own_at_idle_priority() -> None:
    loads = BackgroundLoads()
    seen: dict[str, object] = {}

    def load() -> str:
        seen["thread"] = threading.get_ident()
        seen["policy"] = os.sched_getscheduler(0)
        seen["cpu"] = loads.loader_cpu_seconds()
        seen["switch interval"] = sys.getswitchinterval()
        return "the snapshot"

    before = sys.getswitchinterval()
    assert loads.run(load) == "the snapshot"
    assert seen["thread"] != threading.get_ident()
    assert seen["policy"] == os.SCHED_IDLE
    assert isinstance(seen["cpu"], float)
    assert seen["switch interval"] == pytest.approx(LOADER_SWITCH_INTERVAL_SECONDS)
    # Nothing is left changed: the caller's policy, the interval, the clock.
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    assert sys.getswitchinterval() == before
    assert loads.loader_cpu_seconds() is None


def test_a_failed_load_raises_its_error_in_the_caller_and_leaves_nothing_changed() -> None:
    loads = BackgroundLoads()
    before = sys.getswitchinterval()

    def load() -> None:
        raise LoadError("rules.cbor is truncated")

    with pytest.raises(LoadError, match="truncated"):
        loads.run(load)
    assert sys.getswitchinterval() == before
    assert loads.loader_cpu_seconds() is None


def test_at_normal_priority_a_load_runs_inline_as_before() -> None:
    loads = BackgroundLoads("normal")
    seen = loads.run(lambda: (threading.get_ident(), loads.loader_cpu_seconds()))
    assert seen == (threading.get_ident(), None)


def test_where_idle_priority_is_refused_loads_still_run_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    loads = BackgroundLoads()
    with caplog.at_level(logging.WARNING, logger="actors.background"):
        assert [loads.run(functools.partial(int, n)) for n in range(3)] == [0, 1, 2]
    assert [r.getMessage() for r in caplog.records] == [
        "reloads run at normal priority: SCHED_IDLE is not available here, so a reload "
        "competes with the requests for the CPU"
    ]


def test_an_unknown_priority_is_refused() -> None:
    with pytest.raises(ValueError, match="one of"):
        BackgroundLoads("high")


# -- LoopShare --------------------------------------------------------------------------------


def test_a_share_outside_its_range_is_refused() -> None:
    for share in (0.0, -0.1, MAX_SHARE + 0.01):
        with pytest.raises(ValueError, match="share"):
            LoopShare(share)


def test_without_a_load_the_loop_never_steps_aside() -> None:
    share = LoopShare(0.2)
    assert [share.step(t, None) for t in range(10)] == [0.0] * 10


def test_a_starved_loader_gets_its_share_in_pauses_of_at_most_a_slice() -> None:
    share, loader_cpu, now = LoopShare(0.2, slice_seconds=0.001), 7.0, 100.0
    assert share.period == pytest.approx(0.004)
    pauses = []
    assert share.step(now, loader_cpu) == 0.0  # a new load: the account starts
    for _ in range(1000):
        now += share.period
        pause = share.step(now, loader_cpu)
        pauses.append(pause)
        # The loader runs exactly while the loop sleeps (it has no other time).
        now += pause
        loader_cpu += pause
    assert max(pauses) <= 0.001
    assert sum(pauses) / (now - 100.0) == pytest.approx(0.2, rel=0.02)


def test_a_loader_with_a_core_of_its_own_is_never_given_a_pause() -> None:
    share = LoopShare(0.2)
    assert [share.step(t / 100, t / 100) for t in range(100)] == [0.0] * 100


def test_a_loader_that_cannot_run_costs_the_loop_one_slice_a_period_and_no_more() -> None:
    share = LoopShare(0.5, slice_seconds=0.001)
    share.step(0.0, 1.0)
    # Ten seconds between steps (a loop stalled elsewhere): a slice each, not the 5 s owed.
    assert [share.step(10.0 * t, 1.0) for t in range(1, 6)] == [0.001] * 5


def test_credit_from_running_elsewhere_is_held_to_one_slice() -> None:
    share = LoopShare(0.2, slice_seconds=0.001)
    share.step(0.0, 0.0)
    share.step(1.0, 1.0)  # a whole second of its own core: credit, held to one slice
    # Starved from then on: the first pause comes once the slice of credit is used up.
    steps = [share.step(1.0 + 0.004 * k, 1.0) for k in range(1, 5)]
    assert steps[0] == 0.0
    assert steps[-1] > 0.0


def test_a_new_load_opens_a_new_account() -> None:
    share = LoopShare(0.2, slice_seconds=0.001)
    share.step(0.0, 5.0)
    assert share.step(1.0, 5.0) == 0.001  # starved: owed at least a slice
    assert share.step(1.004, None) == 0.0  # that load ended
    assert share.step(2.0, 0.0) == 0.0  # the next one starts from nothing owed
    assert share.step(2.004, 0.0) == pytest.approx(0.0008)


# -- the real scheduling, on one CPU --------------------------------------------------------------

# A loop kept busy without a pause (as by requests arriving faster than it serves them) and a
# load of hashing (the GIL released, as in numpy's passes) on BackgroundLoads for 1.5 s; prints
# the share of that time the load ran.
BUSY_LOOP = r"""
import asyncio, hashlib, json, os, sys, time
os.sched_setaffinity(0, {int(sys.argv[2])})
from actors.background import BackgroundLoads, LoopShare

share = float(sys.argv[1])
loads = BackgroundLoads()
data = bytes(1 << 18)

def load():
    start = time.monotonic()
    while time.monotonic() - start < 1.5:
        hashlib.sha256(data).digest()
    return time.thread_time() / (time.monotonic() - start)

async def main():
    loop = asyncio.get_running_loop()
    if share > 0:
        stepping_aside = loop.create_task(LoopShare(share).run(loads))
    busy = [True]
    def serve():
        end = time.perf_counter() + 0.0005
        while time.perf_counter() < end:
            pass
        if busy[0]:
            loop.call_soon(serve)
    loop.call_soon(serve)
    ran = await loop.run_in_executor(None, loads.run, load)
    busy[0] = False
    print(json.dumps({"load share": ran}))

asyncio.run(main())
"""


def run_busy_loop(share: float) -> dict[str, float]:
    cpu = min(os.sched_getaffinity(0))
    done = subprocess.run(
        [sys.executable, "-c", BUSY_LOOP, str(share), str(cpu)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout))


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_on_a_busy_core_an_idle_load_runs_only_in_the_time_the_loop_steps_aside() -> None:
    starved, shared = run_busy_loop(0.0), run_busy_loop(0.5)
    # Never given a pause, the load hardly runs (0.1 % here); given half the time in pauses
    # of a slice at most, taken between iterations of the loop, it runs about a quarter.
    assert starved["load share"] < 0.03, starved
    assert shared["load share"] > 0.1, shared
