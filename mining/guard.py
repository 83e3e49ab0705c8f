"""Run a function in a forked worker and hold the whole process tree to a memory budget.

Why a separate process: the engines run in C (pyfim) or in long numpy calls that hold
the GIL, so no thread of the job's own process could stop them; and a third engine may
run a JVM as a child process. The guarding process stays small and responsive: it polls
the proportional set size of itself and every descendant (``/proc``), kills the worker's
tree the moment the sum passes the limit, and logs a heartbeat line on long phases.

The worker tells the guard what it is doing with ``report`` (shown in heartbeats and in
the error when the budget is exceeded) and sends back its result, or its exception, as a
pickle over a pipe. Outside a worker ``report`` does nothing, so pure code can call it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import pickle
import resource
import select
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

from mining.errors import MemoryBudgetError
from mining.memory import process_tree, tree_memory
from mining.sizes import format_size

logger = logging.getLogger("mining")

T = TypeVar("T")
_FRAME = struct.Struct("<Q")
_READ_CHUNK = 1 << 20
# Polls get denser as the tree nears the limit: at the fastest growth measured (pyfim
# building its result, ~620 MiB/s) 20 ms lets the tree pass the limit by ~12 MiB.
_POLL_SECONDS = ((0.5, 0.1), (0.8, 0.05), (float("inf"), 0.02))
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Guarded(Generic[T]):
    """A worker's result with what the guard saw of its memory."""

    value: T
    # The largest sum of the tree's memory the guard polled (guarding process included).
    peak_tree_bytes: int
    # The kernel's peak resident set of the worker (and of children it waited for).
    worker_peak_rss: int
    seconds: float


class _Worker:
    """The worker side of the pipe: frames of (kind, payload) pickles."""

    def __init__(self, fd: int, guard_pid: int) -> None:
        self.fd = fd
        self.guard_pid = guard_pid

    def send(self, kind: str, payload: object) -> None:
        data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        # Length and data written apart: no third copy of a large result.
        for part in (_FRAME.pack(len(data)), data):
            view = memoryview(part)
            while view:
                view = view[os.write(self.fd, view) :]


_worker: _Worker | None = None


def report(phase: str, detail: str) -> None:
    """Tell the guarding process which phase the worker is in (a no-op outside a worker)."""
    if _worker is not None:
        _worker.send("phase", (phase, detail))


def guard_pid() -> int:
    """The process whose tree the budget covers: the guard's when in a worker, else this one."""
    return _worker.guard_pid if _worker is not None else os.getpid()


def _peak_rss() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


def _die_with_parent() -> None:
    """Ask the kernel to kill this worker if the guard dies first (Linux; harmless elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _run_worker(fd: int, guard: int, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The forked child: run, send the outcome, and leave without running the parent's exit code."""
    # One worker per process, set once right after the fork.
    global _worker  # noqa: PLW0603
    code = 0
    try:
        # Own process group: the guard kills the worker's tree with one signal.
        os.setpgid(0, 0)
        _die_with_parent()
        if os.getppid() != guard:
            os._exit(1)
        _worker = _Worker(fd, guard)
        try:
            value = function(*args)
        except BaseException as exc:  # every failure goes back to the guard
            try:
                _worker.send("error", exc)
            except Exception:  # an exception that cannot be pickled
                _worker.send("error", RuntimeError("".join(traceback.format_exception(exc))))
        else:
            _worker.send("done", (value, _peak_rss()))
    except BaseException:  # e.g. the guard went away and the pipe broke
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _kill_tree(pid: int) -> None:
    """SIGKILL the worker's process group and any descendant that left it."""
    for member in process_tree(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _poll_interval(used: int, limit: int) -> float:
    share = used / limit
    return next(seconds for bound, seconds in _POLL_SECONDS if share < bound)


class _Frames:
    """Reassembles length-prefixed pickles read from the pipe."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _FRAME.size:
            (length,) = _FRAME.unpack_from(self._buffer)
            end = _FRAME.size + length
            if len(self._buffer) < end:
                break
            with memoryview(self._buffer) as view:
                frames.append(pickle.loads(view[_FRAME.size : end]))
            del self._buffer[:end]
        return frames


def run_guarded(
    function: Callable[..., T],
    *args: Any,
    limit: int,
    limit_name: str = "MINING_MEMORY_LIMIT",
    advice: str = "",
    heartbeat_seconds: float = 10.0,
) -> Guarded[T]:
    """Call ``function(*args)`` in a forked worker; kill it if this process tree passes ``limit``.

    Returns the value with the memory seen; re-raises the worker's exception. Raises
    MemoryBudgetError (one line: the limit, the phase, ``advice``) when the tree passes
    ``limit`` bytes, when the worker runs out of memory, or when the kernel kills it.
    ``function`` and its arguments are inherited through the fork, never pickled; only
    the result is.
    """
    read_fd, write_fd = os.pipe()
    # A larger pipe (Linux) moves a large result in fewer reads.
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _READ_CHUNK)
    sys.stdout.flush()
    sys.stderr.flush()
    guard = os.getpid()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _run_worker(write_fd, guard, function, args)
    os.close(write_fd)
    # Both sides set the group: whichever runs first, the kill below finds it in place.
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    frames = _Frames()
    phase, detail = "starting", "starting the worker"
    phase_started = started
    next_heartbeat = started + heartbeat_seconds
    next_poll = started
    peak = 0
    outcome: tuple[str, Any] | None = None
    status: int | None = None
    try:
        while True:
            now = time.monotonic()
            if now >= next_poll:
                used = tree_memory(guard)
                peak = max(peak, used)
                if used > limit:
                    _kill_tree(pid)
                    raise MemoryBudgetError(
                        f"memory budget exceeded: the job grew past {format_size(limit)} "
                        f"({limit_name}) after {now - started:.1f} s while {detail}"
                        + (f"; {advice}" if advice else "")
                    )
                if now >= next_heartbeat:
                    logger.info(
                        "heartbeat: %s: %.0f s in this phase (%s), %.0f s in all, memory %s of %s",
                        detail,
                        now - phase_started,
                        phase,
                        now - started,
                        format_size(used),
                        format_size(limit),
                    )
                    next_heartbeat = now + heartbeat_seconds
                next_poll = now + _poll_interval(used, limit)
            # Data is read as fast as it comes; the memory is polled on its own schedule.
            wait = max(0.0, next_poll - time.monotonic())
            readable, _, _ = select.select([read_fd], [], [], wait)
            if not readable:
                continue
            data = os.read(read_fd, _READ_CHUNK)
            if not data:
                _, status = os.waitpid(pid, 0)
                break
            for kind, payload in frames.feed(data):
                if kind == "phase":
                    phase, detail = payload
                    phase_started = time.monotonic()
                else:
                    outcome = (kind, payload)
    except BaseException:
        _kill_tree(pid)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
    seconds = time.monotonic() - started
    if outcome is not None and outcome[0] == "done":
        value, worker_peak = outcome[1]
        return Guarded(value, peak, worker_peak, seconds)
    if outcome is not None:
        error = outcome[1]
        if isinstance(error, MemoryError):
            raise MemoryBudgetError(
                f"out of memory after {seconds:.1f} s while {detail}"
                + (f"; {advice}" if advice else "")
            ) from error
        raise error
    return _died(status, seconds, detail, advice)


def _died(status: int | None, seconds: float, detail: str, advice: str) -> NoReturn:
    """Raise for a worker that ended without sending an outcome."""
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        if number == signal.SIGKILL:
            raise MemoryBudgetError(
                f"the mining worker was killed (SIGKILL, most likely by the kernel for lack of "
                f"memory) after {seconds:.1f} s while {detail}; set MINING_MEMORY_LIMIT below "
                "the memory the job really has" + (f", {advice}" if advice else "")
            )
        raise RuntimeError(f"the mining worker died of {name} after {seconds:.1f} s while {detail}")
    code = os.WEXITSTATUS(status) if status is not None else None
    raise RuntimeError(f"the mining worker exited ({code}) without a result while {detail}")
