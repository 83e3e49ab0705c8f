"""From transactions to a rule set, exactly as the job mines: support, memory check, mine, rules.

``mine_ruleset`` runs in the calling process; ``mine_ruleset_guarded`` runs it in a
forked worker held to the memory budget (``mining.guard``). ``python -m mining``
reads the dataset and calls ``mine_ruleset`` inside its guarded worker, so the
evaluation command, calling either, mines with the job's own code.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from mining.engines import mine_itemsets
from mining.errors import MemoryBudgetError
from mining.estimate import Spectrum, count_itemsets, mining_bytes
from mining.guard import guard_pid, report, run_guarded
from mining.memory import default_limit, memory_limits, release_free_memory, tree_memory
from mining.rules import PackedRules, derive_packed
from mining.rulesfile import RuleSet, RulesHeader
from mining.sizes import format_size
from mining.support import AUTO, exact_fraction, fixed_count, playlists_text, spec_text
from mining.version import __version__

if TYPE_CHECKING:
    from mining.settings import Settings
    from mining.transactions import Transactions

logger = logging.getLogger("mining")

ADVICE = "raise MIN_SUPPORT or lower MAX_LEN (or raise MINING_MEMORY_LIMIT)"


@dataclass(frozen=True)
class MinedRules:
    """A mined rule set and how it was mined."""

    ruleset: RuleSet
    # Playlists an itemset had to be in (what MIN_SUPPORT resolved to).
    min_count: int
    # Frequent itemsets at min_count (singletons included).
    itemsets: int
    # Wall time of counting, mining and deriving the rules.
    seconds: float
    # Longest itemset mined: MAX_LEN, or the longest playlist when that is shorter.
    max_len: int
    # What the memory model expected mining to need over the data already in memory.
    estimated_bytes: int
    # The kernel's peak resident set of the guarded worker (None when run in-process).
    peak_rss_bytes: int | None = None


@dataclass(frozen=True)
class _Plan:
    min_count: int
    spectrum: Spectrum
    estimated_bytes: int


def memory_budget(settings: Settings) -> int:
    """MINING_MEMORY_LIMIT in bytes, or the default share of what this process may use."""
    if settings.memory_limit is not None:
        return settings.memory_limit
    return default_limit(memory_limits())


def _first_fitting(spectrum: Spectrum, engine: str, budget: int, rules: bool) -> int:
    """Smallest count ≥ spectrum.min_count whose counted itemsets fit ``budget`` bytes.

    The need falls as the count rises, so a binary search; n + 1 (nothing frequent)
    when no count fits.
    """
    low, high = spectrum.min_count, spectrum.min_count + _span(spectrum)
    while low < high:
        middle = (low + high) // 2
        if spectrum.need(middle, engine, rules) <= budget:
            high = middle
        else:
            low = middle + 1
    return low


def _span(spectrum: Spectrum) -> int:
    return max((len(v) for v in spectrum.by_size.values()), default=0)


def lowest_fitting_count(
    transactions: Transactions, start: int, max_len: int, engine: str, budget: int
) -> tuple[int, Spectrum]:
    """The lowest count ≥ ``start`` at which mining and the rules fit ``budget`` bytes.

    Each round counts at the current candidate until the sizes counted already exceed
    the budget; those counts are lower bounds at every higher count, which gives the
    next candidate. A round that counts every size is exact and ends the search.
    """
    if mining_bytes({}, 0, engine) > budget:
        raise MemoryBudgetError(
            f"memory budget exceeded before mining: {format_size(budget)} is left of "
            f"MINING_MEMORY_LIMIT once the data is read, less than the {engine} engine "
            "alone needs; raise MINING_MEMORY_LIMIT"
        )
    count = start
    while True:
        report("count", f"counting the itemsets in >= {count} playlists, <= {max_len} songs")
        spectrum = count_itemsets(
            transactions, count, max_len, lambda s: s.need(s.min_count, engine) > budget
        )
        fitting = _first_fitting(spectrum, engine, budget, rules=True)
        if spectrum.complete or fitting > transactions.playlists:
            return fitting, spectrum
        count = fitting


def _refusal(
    settings: Settings,
    transactions: Transactions,
    plan: _Plan,
    budget: int,
    limit: int,
) -> MemoryBudgetError:
    """The one-line error for parameters whose itemsets alone exceed the budget."""
    spectrum, count, n = plan.spectrum, plan.min_count, transactions.playlists
    total = sum(spectrum.itemsets(count).values())
    more = "" if spectrum.complete else "more than "
    changes = []
    if count < n:
        lowest, _ = lowest_fitting_count(
            transactions, count + 1, settings.max_len, settings.engine, budget
        )
        if lowest <= n:
            changes.append(f"raise MIN_SUPPORT to {playlists_text(lowest)} ({lowest / n:.3g})")
    shorter = [
        z
        for z in range(2, min(spectrum.counted_sizes, settings.max_len - 1) + 1)
        if spectrum.need(count, settings.engine, sizes=z) <= budget
    ]
    if shorter:
        changes.append(f"lower MAX_LEN to {shorter[-1]}")
    changes.append("raise MINING_MEMORY_LIMIT")
    advice = ", ".join(changes[:-1]) + f" or {changes[-1]}" if len(changes) > 1 else changes[0]
    return MemoryBudgetError(
        f"memory budget exceeded before mining: MIN_SUPPORT={spec_text(settings.min_support)} "
        f"({count} of {n} playlists) with MAX_LEN={settings.max_len} gives {more}{total:,} "
        f"frequent itemsets, about {format_size(plan.estimated_bytes)} to mine, over the "
        f"{format_size(limit)} budget (MINING_MEMORY_LIMIT); {advice}"
    )


def _left(limit: int, engine: str) -> int:
    """What mining may still take of ``limit``: less what the job's processes hold now and,
    for spark, what its local JVM may still grow by within its heap (``mining.spark``)."""
    left = limit - tree_memory(guard_pid())
    if engine == "spark":
        from mining.spark import jvm_headroom  # noqa: PLC0415

        left -= jvm_headroom()
    return left


def _plan(settings: Settings, transactions: Transactions, limit: int) -> _Plan:
    """Resolve MIN_SUPPORT to a count and check the itemsets it gives against the budget."""
    n = transactions.playlists
    engine = settings.engine
    started = time.perf_counter()
    budget = _left(limit, engine)
    spec = settings.min_support
    if spec == AUTO:
        count, spectrum = lowest_fitting_count(
            transactions, settings.auto_floor, settings.max_len, engine, budget
        )
    else:
        fixed = fixed_count(spec, n)
        if fixed is None:
            raise ValueError(f"MIN_SUPPORT={spec_text(spec)!r} has no playlist count")
        count = fixed
        if not isinstance(spec, str) and exact_fraction(spec) * n < 1:
            logger.warning(
                "MIN_SUPPORT=%s is less than one of the %d playlists: mining at 1 playlist",
                spec_text(spec),
                n,
            )
        report(
            "count", f"counting the itemsets in >= {count} playlists, <= {settings.max_len} songs"
        )
        spectrum = count_itemsets(
            transactions,
            count,
            settings.max_len,
            lambda s: s.need(count, engine, rules=False) > budget,
        )
    # What counting left behind is no longer the budget's: measure again.
    release_free_memory()
    budget = _left(limit, engine)
    if spec == AUTO and spectrum.complete and spectrum.need(count, engine) > budget:
        count = _first_fitting(spectrum, engine, budget, rules=True)
    plan = _Plan(count, spectrum, spectrum.need(count, engine))
    if spec != AUTO and spectrum.need(count, engine, rules=False) > budget:
        raise _refusal(settings, transactions, plan, budget, limit)
    chosen = (
        f"auto is {playlists_text(count)} (floor {playlists_text(settings.auto_floor)})"
        if spec == AUTO
        else f"{spec_text(spec)} is {playlists_text(count)}"
    )
    logger.info(
        "support: %s of %d: %s itemsets, about %s to mine, of the %s left over the data "
        "read; counted in %.2f s",
        chosen,
        n,
        f"{sum(spectrum.itemsets(count).values()):,}",
        format_size(plan.estimated_bytes),
        format_size(budget),
        time.perf_counter() - started,
    )
    return plan


def _keep_rules(packed: PackedRules, keep: npt.NDArray[np.bool_]) -> PackedRules:
    """The rules where ``keep`` is true, still in canonical order."""
    offsets, songs, consequents, counts, antecedent_counts = packed
    lengths = offsets[1:].astype(np.int64) - offsets[:-1]
    new_offsets = np.zeros(int(keep.sum()) + 1, dtype=np.uint32)
    np.cumsum(lengths[keep], out=new_offsets[1:])
    return (
        new_offsets,
        songs[np.repeat(keep, lengths)],
        consequents[keep],
        counts[keep],
        antecedent_counts[keep],
    )


def _cap_rules(packed: PackedRules, min_count: int, cap: int) -> tuple[PackedRules, int]:
    """Raise the count until at most ``cap`` rules are left (rules at a higher count are
    exactly those whose own count reaches it: confidence does not depend on the support)."""
    counts = packed[3]
    if len(counts) <= cap:
        return packed, min_count
    largest_first = np.sort(counts)[::-1]
    raised = int(largest_first[cap]) + 1
    return _keep_rules(packed, counts >= raised), raised


def mine_ruleset(
    transactions: Transactions, settings: Settings, *, limit: int | None = None
) -> MinedRules:
    """Mine ``transactions`` with ``settings`` (support, confidence, MAX_LEN, engine, auto
    bounds) in this process; MemoryBudgetError when the count shows it cannot fit ``limit``
    bytes (default: ``memory_budget(settings)``). The header's ``generated_ns`` is the time
    mining ended; ``python -m mining`` stamps its own at commit."""
    limit = memory_budget(settings) if limit is None else limit
    started = time.perf_counter()
    n = transactions.playlists
    plan = _plan(settings, transactions, limit)
    max_len = plan.spectrum.max_len
    if max_len < settings.max_len:
        logger.info(
            "MAX_LEN=%d is past the longest playlist: none holds more than %d songs that are "
            "in >= %s, so itemsets stop at %d songs",
            settings.max_len,
            max_len,
            playlists_text(plan.min_count),
            max_len,
        )

    phase_started = time.perf_counter()
    report(
        "mine",
        f"mining the itemsets in >= {plan.min_count} of {n} playlists with <= {max_len} songs, "
        f"engine {settings.engine}",
    )
    table = mine_itemsets(transactions, plan.min_count, max_len, settings.engine)
    release_free_memory()
    logger.info(
        "mine: %d frequent itemsets (in >= %d of %d playlists, <= %d songs, engine %s), in %.2f s",
        len(table),
        plan.min_count,
        n,
        settings.max_len,
        settings.engine,
        time.perf_counter() - phase_started,
    )

    phase_started = time.perf_counter()
    report("rules", f"deriving the rules of {len(table):,} itemsets")
    packed = derive_packed(table, settings.min_confidence)
    min_count = plan.min_count
    logger.info(
        "rules: %d rules (confidence >= %r), in %.2f s",
        len(packed[2]),
        settings.min_confidence,
        time.perf_counter() - phase_started,
    )
    if settings.min_support == AUTO and len(packed[2]) > settings.auto_max_rules:
        before = len(packed[2])
        packed, min_count = _cap_rules(packed, min_count, settings.auto_max_rules)
        logger.info(
            "support: %s rules at %s are more than AUTO_MAX_RULES=%d: auto is %s, which keeps %s",
            f"{before:,}",
            playlists_text(plan.min_count),
            settings.auto_max_rules,
            playlists_text(min_count),
            f"{len(packed[2]):,}",
        )
    itemsets = len(table) if min_count == plan.min_count else len(table.at_least(min_count))
    header = RulesHeader(
        package_version=__version__,
        dataset_url=settings.normalised_url,
        generated_ns=time.time_ns(),
        parameters=settings.parameters,
        engine=settings.engine,
        transactions=n,
        song_count=len(transactions.song_names),
        rule_count=len(packed[2]),
        min_count=min_count,
    )
    ruleset = RuleSet(
        header, transactions.song_names, transactions.song_counts.astype(np.uint32), *packed
    )
    return MinedRules(
        ruleset=ruleset,
        min_count=min_count,
        itemsets=itemsets,
        seconds=time.perf_counter() - started,
        max_len=max_len,
        estimated_bytes=plan.estimated_bytes,
    )


def mine_ruleset_guarded(
    transactions: Transactions, settings: Settings, *, limit: int | None = None
) -> MinedRules:
    """``mine_ruleset`` in a forked worker: the calling process and the worker together stay
    under ``limit`` (default ``memory_budget(settings)``) or MemoryBudgetError is raised."""
    limit = memory_budget(settings) if limit is None else limit
    guarded = run_guarded(
        lambda: mine_ruleset(transactions, settings, limit=limit),
        limit=limit,
        advice=ADVICE,
        heartbeat_seconds=settings.heartbeat_seconds,
    )
    return replace(guarded.value, peak_rss_bytes=guarded.worker_peak_rss)
