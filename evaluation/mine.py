"""Mine one fold with the job's own code, in a child process, and time and measure it.

A child per mining run keeps the evaluation's own memory flat and gives each run its own
peak RSS (``os.wait4`` reports the child's ``ru_maxrss``); a run over the memory budget fails
alone and is reported as such instead of ending the evaluation.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from dataclasses import dataclass

from mining.errors import MiningError
from mining.pipeline import mine_ruleset
from mining.reader import Transactions
from mining.rulesfile import RuleSet
from mining.settings import Settings


@dataclass(frozen=True, eq=False)
class MiningRun:
    """The rules of one fold (None when mining failed), with what the run cost."""

    ruleset: RuleSet | None
    seconds: float
    peak_rss_bytes: int
    error: str | None = None


def _child(transactions: Transactions, settings: Settings, write_fd: int) -> None:
    try:
        mined = mine_ruleset(transactions, settings)
        payload = pickle.dumps((mined.ruleset, None), protocol=pickle.HIGHEST_PROTOCOL)
    except MiningError as exc:
        payload = pickle.dumps((None, str(exc)))
    with os.fdopen(write_fd, "wb") as pipe:
        pipe.write(payload)


def mine_fold(transactions: Transactions, settings: Settings) -> MiningRun:
    """Mine ``transactions`` as the job would with ``settings``, in a forked child."""
    read_fd, write_fd = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: mine, send the rules, leave without running the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _child(transactions, settings, write_fd)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    peak = usage.ru_maxrss * 1024
    if os.waitstatus_to_exitcode(status) != 0 or not payload:
        reason = (
            f"killed by signal {-os.waitstatus_to_exitcode(status)}"
            if os.WIFSIGNALED(status)
            else f"exit {os.waitstatus_to_exitcode(status)}"
        )
        return MiningRun(None, seconds, peak, f"mining process failed ({reason})")
    ruleset, error = pickle.loads(payload)
    return MiningRun(ruleset, seconds, peak, error)
