"""Mine one fold with the job's own code under the job's memory guard.

Each fold is mined as ``python -m mining`` mines, in a forked worker whose process tree is
kept under MINING_MEMORY_LIMIT: the evaluation's own memory stays flat, each run reports its
own peak RSS, and a run over the budget fails alone (reported as such in the table) instead
of ending the evaluation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mining.errors import EXPECTED_ERRORS
from mining.pipeline import MinedRules, mine_ruleset_guarded
from mining.settings import Settings
from mining.transactions import Transactions


@dataclass(frozen=True, eq=False)
class MiningRun:
    """What mining one fold gave (None when it failed, with the one-line reason)."""

    mined: MinedRules | None
    seconds: float
    error: str | None = None


def mine_fold(transactions: Transactions, settings: Settings) -> MiningRun:
    """Mine ``transactions`` as the job would with ``settings``, within its memory budget."""
    started = time.perf_counter()
    try:
        mined = mine_ruleset_guarded(transactions, settings)
    except EXPECTED_ERRORS as exc:
        return MiningRun(None, time.perf_counter() - started, str(exc))
    return MiningRun(mined, time.perf_counter() - started)
