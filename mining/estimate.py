"""Count frequent itemsets before mining them, and turn counts into the memory mining needs.

Singletons and pairs are counted exactly with sparse products of song blocks, in
bounded memory. Longer itemsets are counted by pyfim without materialising them: its
"pattern spectrum" is the number of frequent itemsets of each size at each exact
playlist count, and it counts the itemsets of long shared runs of songs
combinatorially (perfect extensions), so the 500-playlist course sample's
162,587,736 itemsets at 2 playlists and 8 songs are counted in 10 ms. Counting still
visits every itemset of the other kinds, so sizes are counted one more at a time and
counting stops as soon as those already counted need more memory than the budget.
Without pyfim, the pairs are a lower bound for longer itemsets.

One spectrum counted at ``c`` playlists holds the counts at every ``c' ≥ c``,
which is what the ``auto`` support searches.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from mining.engines import (
    everywhere_itemsets,
    frequent_part,
    frequent_width,
    pyfim_rows,
)
from mining.memory import MIB

if TYPE_CHECKING:
    from mining.transactions import Transactions

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class EngineCost:
    """Bytes an engine needs while it mines: fixed, per occurrence of a frequent song in a
    playlist (its input and tree), per itemset and per song of an itemset (its result)."""

    fixed: int
    per_occurrence: int
    per_itemset: int
    per_song: int


# Measured peaks over the data already in memory (docs/mining-memory.md), rounded up:
# pyfim's input lists (22 bytes an occurrence) and tree (60-90) and its list of tuples
# (141-300 bytes an itemset), with room for the allocator's slack seen in whole jobs;
# mlxtend's frame and tree ~470 an occurrence, its frame of frozensets 405-570 an itemset.
ENGINE_COSTS = {
    "pyfim": EngineCost(fixed=16 * MIB, per_occurrence=160, per_itemset=300, per_song=8),
    "mlxtend": EngineCost(fixed=100 * MIB, per_occurrence=500, per_itemset=600, per_song=16),
    # Spark's Python side only (its JVM is held to its own heap, which the pipeline sets
    # aside): the baskets built for Spark (frequent_part's copies, int32 arrays), and its
    # result as Arrow columns, their numpy copies and the sort into the table.
    "spark": EngineCost(fixed=32 * MIB, per_occurrence=40, per_itemset=80, per_song=24),
}
# The itemset table (4 bytes a song, 8 a count, 16 of hash index), then the rules: a rule
# of antecedent length L ends as 4L + 16 bytes and peaks at about 2.5 times that while
# sorted into the canonical order (60-80 bytes measured per rule of 1-4 songs).
TABLE_PER_ITEMSET = 24
TABLE_PER_SONG = 4
RULE_PER_SONG = 10
RULE_FIXED = 40


@dataclass(frozen=True)
class Spectrum:
    """Frequent itemsets counted at ``min_count``: ``by_size[k][v]`` itemsets of k songs in
    exactly ``min_count + v`` playlists, for every size up to ``counted_sizes``;
    ``occurrences[v]``: songs in ≥ ``min_count + v`` playlists, summed over the playlists."""

    min_count: int
    max_len: int
    counted_sizes: int
    by_size: dict[int, I64]
    occurrences: I64

    @property
    def complete(self) -> bool:
        """Whether every size up to ``max_len`` was counted (else the counts are a lower bound)."""
        return self.counted_sizes >= self.max_len

    def itemsets(self, count: int, sizes: int | None = None) -> dict[int, int]:
        """Itemsets of each size in at least ``count`` (≥ min_count) playlists, up to ``sizes``."""
        offset = count - self.min_count
        if offset < 0:
            raise ValueError(f"counted from {self.min_count} playlists, not {count}")
        limit = self.counted_sizes if sizes is None else min(sizes, self.counted_sizes)
        found = {k: int(v[offset:].sum()) for k, v in self.by_size.items() if k <= limit}
        return {k: number for k, number in found.items() if number}

    def need(self, count: int, engine: str, rules: bool = True, sizes: int | None = None) -> int:
        """``mining_bytes`` of the itemsets counted at ``count`` playlists."""
        offset = count - self.min_count
        occurrences = int(self.occurrences[offset]) if offset < len(self.occurrences) else 0
        return mining_bytes(self.itemsets(count, sizes), occurrences, engine, rules)


def mining_bytes(
    itemsets: dict[int, int], occurrences: int, engine: str, rules: bool = True
) -> int:
    """Memory to mine ``itemsets`` (count by size) from ``occurrences`` of frequent songs in
    playlists and, with ``rules``, derive their rules.

    The engine's result and the rule derivation do not coexist (the engine's objects are
    freed as they are converted), so the need is the larger of the two. The rules are
    counted at their upper bound (k rules per itemset of k songs), as if every rule
    passed the confidence threshold.
    """
    # An engine without measured costs is priced like the hungriest one measured.
    cost = ENGINE_COSTS.get(engine, ENGINE_COSTS["mlxtend"])
    count = sum(itemsets.values())
    songs = sum(k * n for k, n in itemsets.items())
    engine_bytes = (
        cost.fixed
        + occurrences * cost.per_occurrence
        + count * cost.per_itemset
        + songs * cost.per_song
    )
    table = count * TABLE_PER_ITEMSET + songs * TABLE_PER_SONG
    if not rules:
        return max(engine_bytes, table)
    rule_bytes = sum(
        k * n * (RULE_FIXED + RULE_PER_SONG * (k - 1)) for k, n in itemsets.items() if k > 1
    )
    return max(engine_bytes, table + rule_bytes)


def pyfim_available() -> bool:
    """Whether the exact counter (pyfim's pattern spectrum) can run here."""
    return importlib.util.find_spec("fim") is not None


def longest_playlist(transactions: Transactions, min_count: int) -> int:
    """Most songs in at least ``min_count`` playlists that one playlist holds."""
    width = frequent_width(transactions, min_count)
    if width == 0:
        return 0
    indptr, _ = frequent_part(transactions, width)
    return int(np.diff(indptr).max())


def _occurrences(transactions: Transactions, min_count: int) -> I64:
    """For each count c ≥ min_count (index c − min_count): occurrences of songs in ≥ c playlists."""
    n = transactions.playlists
    counts = transactions.song_counts[transactions.song_counts >= min_count]
    per_count = np.bincount(counts - min_count, weights=counts, minlength=n - min_count + 1)
    return np.cumsum(per_count[::-1])[::-1].astype(np.int64)


def _spectrum_arrays(
    counts: dict[tuple[int, int], float], min_count: int, n: int
) -> dict[int, I64]:
    by_size: dict[int, I64] = {}
    for (size, support), number in counts.items():
        if support < min_count:
            continue
        row = by_size.setdefault(size, np.zeros(n - min_count + 1, dtype=np.int64))
        row[support - min_count] += int(number)
    return by_size


def _pyfim_spectrum(
    transactions: Transactions, min_count: int, rows: list[list[int]], size: int
) -> dict[int, I64]:
    import fim  # noqa: PLC0415

    n = transactions.playlists
    found = fim.fpgrowth(rows, target="s", supp=-min_count, zmax=size, report="#")
    by_size = _spectrum_arrays(found, min_count, n)
    width = frequent_width(transactions, min_count)
    everywhere, longest = everywhere_itemsets(transactions, width, size)
    for k in range(1, longest + 1):
        row = by_size.setdefault(k, np.zeros(n - min_count + 1, dtype=np.int64))
        row[n - min_count] += math.comb(len(everywhere), k)
    return by_size


def _pair_spectrum(transactions: Transactions, min_count: int, width: int) -> dict[int, I64]:
    """Singletons and pairs by exact count, from sparse products of song blocks."""
    import scipy.sparse as sp  # noqa: PLC0415

    n = transactions.playlists
    by_size = {1: np.zeros(n - min_count + 1, dtype=np.int64)}
    singles = transactions.song_counts[:width]
    np.add.at(by_size[1], singles - min_count, 1)
    indptr, indices = frequent_part(transactions, width)
    incidence = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.int32), indices, indptr), shape=(n, width)
    ).tocsc()
    pairs = np.zeros(n - min_count + 1, dtype=np.int64)
    # Each block's product holds at most block × width counts, ~48 bytes each while it is
    # built, converted and filtered: ≤ ~64 MiB a block.
    block = max(1, (64 * MIB) // (48 * max(width, 1)))
    for start in range(0, width, block):
        product = (incidence[:, start : start + block].T @ incidence).tocoo()
        later = product.col > product.row + start
        values = product.data[later]
        values = values[values >= min_count]
        pairs += np.bincount(values - min_count, minlength=n - min_count + 1)
    by_size[2] = pairs
    return by_size


def count_itemsets(
    transactions: Transactions,
    min_count: int,
    max_len: int,
    too_many: Callable[[Spectrum], bool],
) -> Spectrum:
    """Count the frequent itemsets at ``min_count``, one more size at a time.

    Singletons and pairs come from sparse products (exact, in bounded memory: pyfim's
    own counting of 7 million pairs took 700 MiB); longer itemsets from pyfim's
    spectrum, when it is installed. Stops after the first size at which
    ``too_many(spectrum so far)`` holds: the counts so far are then a lower bound of
    the full spectrum, at every count ≥ min_count.
    """
    n = transactions.playlists
    if min_count > n:
        return Spectrum(min_count, max_len, max_len, {}, np.zeros(0, dtype=np.int64))
    occurrences = _occurrences(transactions, min_count)
    longest = min(max_len, longest_playlist(transactions, min_count))
    if longest == 0:
        return Spectrum(min_count, max_len, max_len, {}, occurrences)
    width = frequent_width(transactions, min_count)
    counted = min(2, longest)
    pairs = _pair_spectrum(transactions, min_count, width)
    by_size = {k: v for k, v in pairs.items() if k <= counted}
    spectrum = Spectrum(min_count, longest, counted, by_size, occurrences)
    if spectrum.complete or too_many(spectrum) or not pyfim_available():
        return spectrum
    rows = pyfim_rows(transactions, width)
    for size in range(3, longest + 1):
        by_size = _pyfim_spectrum(transactions, min_count, rows, size)
        spectrum = Spectrum(min_count, longest, size, by_size, occurrences)
        if too_many(spectrum):
            break
    return spectrum
