"""Frequent itemsets as numpy arrays grouped by size: a few bytes each instead of Python objects.

The engines hand their results over as Python objects (pyfim: a list of tuples,
mlxtend: a frame of frozensets), at 150-400 bytes per itemset; converted at once,
an itemset of k songs costs 4k + 4 bytes, and rules are derived from the arrays
with vectorised lookups (``mining.rules``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]


def lexicographic_order(rows: npt.NDArray[np.integer]) -> I64:
    """The permutation that sorts the rows like tuples (first column first)."""
    if rows.shape[1] == 0:
        return np.arange(len(rows), dtype=np.int64)
    return np.lexsort(rows.T[::-1]).astype(np.int64)


_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(29)


def row_hashes(rows: npt.NDArray[np.integer]) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each row: searched in sorted order, then checked against the row itself."""
    hashes = np.zeros(len(rows), dtype=np.uint64)
    for column in range(rows.shape[1]):
        hashes ^= rows[:, column].astype(np.uint64)
        hashes *= _MIX
        hashes ^= hashes >> _SHIFT
    return hashes


@dataclass(frozen=True, eq=False)
class SizeGroup:
    """The itemsets of one size k: ``songs[i]`` ascending ids, rows in lexicographic order."""

    songs: U32
    counts: I64

    @property
    def size(self) -> int:
        """Songs per itemset."""
        return int(self.songs.shape[1])


def group_from_rows(songs: npt.NDArray[np.integer], counts: npt.ArrayLike) -> SizeGroup:
    """Sort each row's ids, then the rows, into a SizeGroup."""
    rows = np.sort(np.asarray(songs, dtype=np.uint32), axis=1)
    order = lexicographic_order(rows)
    return SizeGroup(rows[order], np.asarray(counts, dtype=np.int64)[order])


class ItemsetTable(Mapping[tuple[int, ...], int]):
    """Frequent itemsets by size: ``table[(a, b)]`` is the playlist count of {a, b}.

    A read-only mapping of ascending song-id tuples to counts, so tests and small
    callers can treat it like a dict; the rule derivation works on ``groups``.
    """

    def __init__(self, groups: Iterable[SizeGroup]) -> None:
        self.groups: dict[int, SizeGroup] = {g.size: g for g in groups if len(g.counts)}
        self._index: dict[int, tuple[npt.NDArray[np.uint64], I64]] = {}

    @classmethod
    def from_flat(cls, flat: npt.ArrayLike, lengths: I64, counts: npt.ArrayLike) -> ItemsetTable:
        """Build from concatenated itemsets: ``lengths[i]`` ids of itemset i, then the next."""
        flat = np.asarray(flat, dtype=np.uint32)
        counts = np.asarray(counts, dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        groups = []
        for size in np.unique(lengths).tolist():
            which = np.flatnonzero(lengths == size)
            rows = flat[starts[which, None] + np.arange(size)]
            groups.append(group_from_rows(rows, counts[which]))
        return cls(groups)

    @classmethod
    def from_mapping(cls, itemsets: Mapping[tuple[int, ...], int]) -> ItemsetTable:
        """Build from any mapping of song-id tuples to counts (order within a tuple ignored)."""
        if isinstance(itemsets, ItemsetTable):
            return itemsets
        items = list(itemsets.items())
        lengths = np.fromiter((len(k) for k, _ in items), dtype=np.int64, count=len(items))
        flat = np.fromiter(
            itertools.chain.from_iterable(k for k, _ in items),
            dtype=np.uint32,
            count=int(lengths.sum()),
        )
        counts = np.fromiter((c for _, c in items), dtype=np.int64, count=len(items))
        return cls.from_flat(flat, lengths, counts)

    def sizes(self) -> dict[int, int]:
        """Number of itemsets of each size."""
        return {size: len(group.counts) for size, group in sorted(self.groups.items())}

    def at_least(self, min_count: int) -> ItemsetTable:
        """The itemsets in at least ``min_count`` playlists (still closed under subsets)."""
        return ItemsetTable(
            SizeGroup(g.songs[keep], g.counts[keep])
            for g in self.groups.values()
            for keep in [g.counts >= min_count]
        )

    def _hash_index(self, size: int) -> tuple[npt.NDArray[np.uint64], I64]:
        """Sorted row hashes of the itemsets of ``size`` songs and where each row is (cached)."""
        if size not in self._index:
            hashes = row_hashes(self.groups[size].songs)
            order = np.argsort(hashes, kind="stable").astype(np.int64)
            self._index[size] = (hashes[order], order)
        return self._index[size]

    def lookup(self, rows: npt.NDArray[np.integer]) -> I64:
        """Counts of the itemsets given as ascending rows of one size; KeyError if one is absent."""
        size = rows.shape[1]
        if size not in self.groups:
            raise KeyError(f"no itemsets of {size} songs")
        group = self.groups[size]
        sorted_hashes, where = self._hash_index(size)
        wanted = row_hashes(rows)
        at = np.minimum(np.searchsorted(sorted_hashes, wanted), len(sorted_hashes) - 1)
        found = where[at]
        unmatched = np.flatnonzero(np.any(group.songs[found] != rows, axis=1))
        # A row whose hash is shared with another itemset: walk the run of equal hashes.
        for i in unmatched.tolist():
            position = int(at[i])
            while position < len(sorted_hashes) and sorted_hashes[position] == wanted[i]:
                if np.array_equal(group.songs[where[position]], rows[i]):
                    found[i] = where[position]
                    break
                position += 1
            else:
                raise KeyError("an itemset is missing: the table is not closed under subsets")
        return group.counts[found]

    def __getitem__(self, key: tuple[int, ...]) -> int:
        try:
            return int(self.lookup(np.array([sorted(key)], dtype=np.uint32))[0])
        except KeyError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        for _, group in sorted(self.groups.items()):
            for row in group.songs.tolist():
                yield tuple(row)

    def __len__(self) -> int:
        return sum(len(g.counts) for g in self.groups.values())

    def __repr__(self) -> str:
        return f"ItemsetTable({self.sizes()})"
