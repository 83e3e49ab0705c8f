"""Reloads at idle CPU priority, and the event loop's share of CPU time it hands them.

Building a new index costs a reload about a third of a second of CPU per million rules
(recommender/index.py). On the serving core, a thread of normal priority takes that time in
slices the kernel ends only at its next tick (4 ms at the usual 250 Hz): every request in
flight then waits that long, and the p99 of a server kept busy rose by about 4 ms for as long
as the load ran, whatever nice value the loader had (docs/performance.md).

So a reload runs on a thread of its own under ``SCHED_IDLE``: the kernel runs it only when no
other thread wants the core, and takes the core back the moment one wakes. The serving thread
never waits for it, and with a core to spare (the usual pod) the load runs there at full
speed. On a core the requests keep busy without a pause it would never run, so the event
loop steps aside on purpose (:class:`LoopShare`): while a load runs and has had less than
``share`` of the time, the loop sleeps for at most one :data:`STEP_ASIDE_SECONDS` slice (the
loader runs in it), then serves for ``(1 - share) / share`` slices. A request waits at most one
slice for a reload, and a reload still ends, in about its CPU time over ``share`` (the loop
pauses only between two of its iterations, so a loop busy for long stretches gives less).

``RELOAD_PRIORITY=normal`` loads on the RuleServer's own thread at its priority, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

RELOAD_PRIORITIES = ("idle", "normal")
# The longest the event loop sleeps at once to let a starved reload run: the most a request
# waits for it.
STEP_ASIDE_SECONDS = 0.0005
# The largest share of the loop's time a reload can be given (RELOAD_CPU_SHARE).
MAX_SHARE = 0.9
# The GIL switch interval while an idle-priority load runs (Python's default: 5 ms). The loader
# runs whenever the serving thread waits, for the GIL too: when that thread wants the GIL back
# it asks after this long, not after 5 ms (docs/performance.md measures both).
LOADER_SWITCH_INTERVAL_SECONDS = 0.0002
# The most the loader can be owed, in slices. Pauses are a slice each at most, so this only
# bounds how long the loop keeps pausing once the loader gets time of its own again.
DEBT_SLICES = 4
# How often the loop looks for a running reload when there is none.
IDLE_POLL_SECONDS = 0.05


def _lower_own_priority() -> bool:
    """Put the calling thread (Linux: ``sched_setscheduler(0)`` is per thread) under
    ``SCHED_IDLE``; False where the platform or a sandbox refuses it."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True


class BackgroundLoads:
    """Runs reloads on a thread at idle priority (or inline, ``priority="normal"``) and tells
    the event loop how much CPU time the running one has had.

    Shared by the RuleServer, which runs the loads one at a time, and the HttpFrontend, whose
    loop reads :meth:`loader_cpu_seconds`; both outlive restarts of either, so the supervisor
    owns it.
    """

    def __init__(self, priority: str = "idle") -> None:
        if priority not in RELOAD_PRIORITIES:
            raise ValueError(f"reload priority must be one of {RELOAD_PRIORITIES}: {priority!r}")
        self.priority = priority
        # The CPU-time clock of the thread running a load, None between loads. Taken by the
        # loader itself: a clock of an ended thread is refused (EINVAL), never another's.
        self._clock: int | None = None
        self._warned = False

    def run(self, load: Callable[[], T]) -> T:
        """``load()``, on a thread at idle priority unless ``priority`` is "normal"; waits for
        it and returns its result or raises its exception."""
        if self.priority == "normal":
            return load()
        outcome: list[T] = []
        failure: list[BaseException] = []

        def loader() -> None:
            if not _lower_own_priority() and not self._warned:
                self._warned = True
                log.warning(
                    "reloads run at normal priority: SCHED_IDLE is not available here, so a "
                    "reload competes with the requests for the CPU"
                )
            self._clock = time.pthread_getcpuclockid(threading.get_ident())
            try:
                outcome.append(load())
            except BaseException as exc:
                failure.append(exc)
            finally:
                self._clock = None

        thread = threading.Thread(target=loader, name="rules-loader")
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(LOADER_SWITCH_INTERVAL_SECONDS)
        try:
            thread.start()
            thread.join()
        finally:
            sys.setswitchinterval(switch_interval)
        if failure:
            raise failure[0]
        return outcome[0]

    def loader_cpu_seconds(self) -> float | None:
        """CPU time of the load running now, None when none is."""
        clock = self._clock
        if clock is None:
            return None
        try:
            return time.clock_gettime(clock)
        except OSError:  # it ended between the read and the call
            return None


class LoopShare:
    """When the event loop should step aside for a starved reload: the arithmetic alone.

    :meth:`step` is called once a period with the time and the loader's CPU time; it returns
    how long to sleep. The loader is owed ``share`` of the time since its load started, less
    the CPU time it got; a pause is one slice at most, so a loader that cannot run (the core
    given to another process instead) costs the loop a slice a period and no more.
    """

    def __init__(self, share: float, slice_seconds: float = STEP_ASIDE_SECONDS) -> None:
        if not 0 < share <= MAX_SHARE:
            raise ValueError(f"share must be in (0, {MAX_SHARE}]: {share}")
        self.share = share
        self.slice = slice_seconds
        # A slice after each period gives the loader ``share`` of the time.
        self.period = slice_seconds * (1 - share) / share
        self._last: tuple[float, float] | None = None
        self._owed = 0.0

    def step(self, now: float, loader_cpu: float | None) -> float:
        """Seconds to sleep now (0: none); ``loader_cpu`` None: no load is running."""
        if loader_cpu is None:
            self._last, self._owed = None, 0.0
            return 0.0
        if self._last is None or loader_cpu < self._last[1]:  # a new load (a new thread)
            self._last, self._owed = (now, loader_cpu), 0.0
            return 0.0
        then, cpu_then = self._last
        self._owed += self.share * (now - then) - (loader_cpu - cpu_then)
        self._owed = min(max(self._owed, -self.slice), DEBT_SLICES * self.slice)
        self._last = (now, loader_cpu)
        # What the loader gets of the pause shows in its CPU time at the next step: not
        # taken off here, so a loader that cannot use it is owed it again (one slice a step).
        return min(max(self._owed, 0.0), self.slice)

    async def run(self, loads: BackgroundLoads) -> None:
        """On the event loop, forever (until cancelled): step aside for ``loads``' loader."""
        while True:
            cpu = loads.loader_cpu_seconds()
            pause = self.step(time.monotonic(), cpu)
            if pause > 0:
                # Blocking the loop is the point: the core goes to the idle-priority loader.
                time.sleep(pause)
            await asyncio.sleep(IDLE_POLL_SECONDS if cpu is None else self.period)
