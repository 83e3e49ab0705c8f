"""Frequent itemsets with exact integer counts, from mlxtend (default), pyfim or Spark.

mlxtend and Spark get a float support half a playlist below the exact threshold
and their results are filtered on integer counts; pyfim gets the integer count
itself. So float rounding can neither add nor drop an itemset, and the engines
give identical itemsets. Spark's own job path (it reads the dataset itself) is
``mining.spark.read_and_mine``; ``mine_itemsets`` runs it on in-memory data.
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    # Type only: settings imports this module, and a skipped run must not pay for pyarrow.
    from mining.reader import Transactions

ENGINES = ("mlxtend", "pyfim", "spark")
# The module each engine imports, and the extra that installs it.
_LIBRARIES = {
    "mlxtend": ("mlxtend", "mining"),
    "pyfim": ("fim", "fast"),
    "spark": ("pyspark", "spark"),
}
# Sorted song-id tuple → number of playlists containing all those songs.
Itemsets = dict[tuple[int, ...], int]


@dataclass(frozen=True, eq=False)
class SongTable:
    """A dataset's rows and songs: ids by descending playlist count, then name (the reader's)."""

    rows: int
    skipped_rows: int
    playlists: int
    song_names: tuple[str, ...]
    song_counts: np.ndarray


@dataclass(frozen=True, eq=False)
class MinedDataset:
    """A dataset's song table and its frequent itemsets (song ids, integer counts)."""

    songs: SongTable
    min_count: int
    itemsets: Itemsets
    # Time spent finding the itemsets, reading the dataset excluded.
    seconds: float


class EngineUnavailableError(RuntimeError):
    """The requested engine's library is not installed."""


def engine_problem(engine: str) -> str | None:
    """Why ``engine`` cannot run here (without importing it), or None when it can."""
    module, extra = _LIBRARIES[engine]
    if importlib.util.find_spec(module) is None:
        return (
            f"the {module} library is not installed (pip install 'playlist-recommender[{extra}]')"
        )
    if engine == "spark":
        from mining.spark import java_problem  # noqa: PLC0415

        return java_problem()
    return None


def mine_itemsets(
    transactions: Transactions, min_count: int, max_len: int | None, engine: str
) -> Itemsets:
    """All itemsets in at least ``min_count`` playlists, at most ``max_len`` songs (None: any)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown mining engine {engine!r}")
    problem = engine_problem(engine)
    if problem:
        raise EngineUnavailableError(f"engine {engine}: {problem}")
    # Ids are ordered by descending count, so the frequent songs are the ids below this.
    width = int(np.count_nonzero(transactions.song_counts >= min_count))
    if width == 0 or (max_len is not None and max_len < 1):
        return {}
    if engine == "mlxtend":
        return _mlxtend(transactions, min_count, max_len, width)
    if engine == "spark":
        from mining.spark import mine_transactions  # noqa: PLC0415

        return mine_transactions(transactions, min_count, max_len, width)
    return _pyfim(transactions, min_count, max_len, width)


def frequent_part(transactions: Transactions, width: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(indptr, indices)`` of the incidence matrix restricted to songs ``0..width-1``."""
    keep = transactions.indices < width
    row_of = np.repeat(np.arange(transactions.playlists), np.diff(transactions.indptr))
    per_playlist = np.bincount(row_of[keep], minlength=transactions.playlists)
    indptr = np.zeros(transactions.playlists + 1, dtype=np.int64)
    np.cumsum(per_playlist, out=indptr[1:])
    return indptr, transactions.indices[keep]


def _mlxtend(
    transactions: Transactions, min_count: int, max_len: int | None, width: int
) -> Itemsets:
    # Imported here: pandas and mlxtend take a second to import and a skipped run needs neither.
    import pandas as pd  # noqa: PLC0415
    import scipy.sparse as sp  # noqa: PLC0415
    from mlxtend.frequent_patterns import fpgrowth  # noqa: PLC0415

    n = transactions.playlists
    indptr, indices = frequent_part(transactions, width)
    matrix = sp.csr_matrix((np.ones(len(indices), dtype=bool), indices, indptr), shape=(n, width))
    # Column j is song id j: mlxtend reports itemsets as frozensets of column positions.
    frame = pd.DataFrame.sparse.from_spmatrix(matrix)
    # Half a playlist below the exact threshold: safely above min_count - 1, never above min_count.
    found = fpgrowth(frame, min_support=(min_count - 0.5) / n, max_len=max_len)
    itemsets: Itemsets = {}
    for support, items in zip(found["support"].tolist(), found["itemsets"].tolist(), strict=True):
        count = round(support * n)
        if count >= min_count:
            itemsets[tuple(sorted(int(i) for i in items))] = count
    return itemsets


def _pyfim(transactions: Transactions, min_count: int, max_len: int | None, width: int) -> Itemsets:
    try:
        import fim  # noqa: PLC0415
    except ImportError as exc:
        raise EngineUnavailableError(f"engine pyfim: cannot import fim: {exc}") from exc

    n = transactions.playlists
    indptr, indices = frequent_part(transactions, width)
    flat = indices.tolist()
    bounds = indptr.tolist()
    rows = [flat[bounds[p] : bounds[p + 1]] for p in range(n)]
    # A negative support is an absolute count: no float threshold at all.
    # pyfim rejects zmax=None: leave it out for "no limit".
    limit = {} if max_len is None else {"zmax": max_len}
    found = fim.fpgrowth(rows, target="s", supp=-min_count, report="a", **limit)
    itemsets: Itemsets = {tuple(sorted(items)): int(count) for items, count in found}
    # pyfim never reports an itemset made only of songs in every playlist (they are "perfect
    # extensions" of the empty set); every such itemset is frequent, with count n.
    everywhere = np.flatnonzero(transactions.song_counts[:width] == n).tolist()
    longest = len(everywhere) if max_len is None else min(max_len, len(everywhere))
    for size in range(1, longest + 1):
        for combo in itertools.combinations(everywhere, size):
            itemsets.setdefault(combo, n)
    return itemsets
