"""Frequent itemsets with exact integer counts, from pyfim (default where installed), mlxtend
or Spark.

mlxtend and Spark get a float support half a playlist below the exact threshold
and their results are filtered on integer counts; pyfim gets the integer count
itself. So float rounding can neither add nor drop an itemset, and the engines
give identical itemsets. Each engine's results are turned into an
``ItemsetTable`` (numpy arrays) as they are read, and freed.
"""

from __future__ import annotations

import importlib.util
import itertools
import operator
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from mining.itemsets import ItemsetTable
from mining.memory import release_free_memory

if TYPE_CHECKING:
    # Type only: settings imports this module, and a skipped run must not pay for pyarrow.
    from mining.transactions import Transactions

# In order of preference: the default engine is the first single-machine one installed
# (spark is chosen by name only: it starts a JVM, and pays off past one machine).
ENGINES = ("pyfim", "mlxtend", "spark")
_DEFAULT_CANDIDATES = ("pyfim", "mlxtend")
_MODULES = {"pyfim": "fim", "mlxtend": "mlxtend", "spark": "pyspark"}
_EXTRAS = {"pyfim": "fast", "mlxtend": "mining", "spark": "spark"}
# Engine results are converted this many itemsets at a time, each slice freed at once.
_CHUNK = 1 << 18
Itemsets = ItemsetTable


class EngineUnavailableError(RuntimeError):
    """The requested engine's library is not installed."""


def engine_problem(engine: str) -> str | None:
    """Why ``engine`` cannot run here (without importing it), or None when it can."""
    module = _MODULES[engine]
    if importlib.util.find_spec(module) is None:
        return (
            f"the {module} library is not installed "
            f"(pip install 'playlist-recommender[{_EXTRAS[engine]}]')"
        )
    if engine == "spark":
        from mining.spark import java_problem  # noqa: PLC0415

        return java_problem()
    return None


def default_engine() -> str:
    """pyfim where it is installed (tens of times faster), else mlxtend."""
    return next(
        (e for e in _DEFAULT_CANDIDATES if engine_problem(e) is None), _DEFAULT_CANDIDATES[-1]
    )


def frequent_width(transactions: Transactions, min_count: int) -> int:
    """How many songs are in at least ``min_count`` playlists (ids are ordered by count)."""
    return int(np.count_nonzero(transactions.song_counts >= min_count))


def mine_itemsets(
    transactions: Transactions, min_count: int, max_len: int | None, engine: str
) -> ItemsetTable:
    """All itemsets in at least ``min_count`` playlists, at most ``max_len`` songs (None: any)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown mining engine {engine!r}")
    problem = engine_problem(engine)
    if problem:
        raise EngineUnavailableError(f"engine {engine}: {problem}")
    width = frequent_width(transactions, min_count)
    if width == 0 or (max_len is not None and max_len < 1):
        return ItemsetTable(())
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


def pyfim_rows(transactions: Transactions, width: int) -> list[list[int]]:
    """The playlists as pyfim takes them, restricted to the frequent songs ``0..width-1``."""
    indptr, indices = frequent_part(transactions, width)
    # One int object per song id, referenced from every playlist: 8 bytes an occurrence
    # instead of a fresh 28-byte int each.
    ids = list(range(width))
    pick = ids.__getitem__
    bounds = indptr.tolist()
    return [
        list(map(pick, indices[bounds[p] : bounds[p + 1]].tolist()))
        for p in range(transactions.playlists)
    ]


def everywhere_itemsets(
    transactions: Transactions, width: int, max_len: int | None
) -> tuple[list[int], int]:
    """Songs in every playlist and the longest itemset made of them pyfim leaves out.

    pyfim never reports an itemset made only of songs in every playlist (they are
    "perfect extensions" of the empty set); every such itemset is frequent, with count n.
    """
    everywhere = np.flatnonzero(transactions.song_counts[:width] == transactions.playlists)
    longest = len(everywhere) if max_len is None else min(max_len, len(everywhere))
    return everywhere.tolist(), longest


def _to_arrays(
    pairs: list[tuple[tuple[int, ...], int]],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Flatten (itemset, count) pairs to arrays, emptying ``pairs`` slice by slice as it goes."""
    flats, lengths, counts = [], [], []
    while pairs:
        chunk = pairs[-_CHUNK:]
        del pairs[-_CHUNK:]
        sets = list(map(operator.itemgetter(0), chunk))
        counts.append(
            np.fromiter(map(operator.itemgetter(1), chunk), dtype=np.int64, count=len(chunk))
        )
        del chunk
        sizes = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        lengths.append(sizes)
        flats.append(
            np.fromiter(
                itertools.chain.from_iterable(sets), dtype=np.uint32, count=int(sizes.sum())
            )
        )
        del sets
    if not lengths:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(flats), np.concatenate(lengths), np.concatenate(counts)


def _mlxtend(
    transactions: Transactions, min_count: int, max_len: int | None, width: int
) -> ItemsetTable:
    # Imported here: pandas and mlxtend take a second to import and a skipped run needs neither.
    import pandas as pd  # noqa: PLC0415
    import scipy.sparse as sp  # noqa: PLC0415
    from mlxtend.frequent_patterns import fpgrowth  # noqa: PLC0415

    n = transactions.playlists
    indptr, indices = frequent_part(transactions, width)
    matrix = sp.csr_matrix((np.ones(len(indices), dtype=bool), indices, indptr), shape=(n, width))
    # Column j is song id j: mlxtend reports itemsets as frozensets of column positions.
    frame = pd.DataFrame.sparse.from_spmatrix(matrix)
    del matrix
    # Half a playlist below the exact threshold: safely above min_count - 1, never above min_count.
    found = fpgrowth(frame, min_support=(min_count - 0.5) / n, max_len=max_len)
    del frame
    counts = np.rint(found["support"].to_numpy() * n).astype(np.int64).tolist()
    pairs = list(zip(found["itemsets"].tolist(), counts, strict=True))
    del found, counts
    flat, lengths, counts = _to_arrays(pairs)
    keep = counts >= min_count
    starts = np.repeat(keep, lengths)
    return ItemsetTable.from_flat(flat[starts], lengths[keep], counts[keep])


def _pyfim(
    transactions: Transactions, min_count: int, max_len: int | None, width: int
) -> ItemsetTable:
    try:
        import fim  # noqa: PLC0415
    except ImportError as exc:
        raise EngineUnavailableError(f"engine pyfim: cannot import fim: {exc}") from exc

    rows = pyfim_rows(transactions, width)
    # The CSR copies pyfim_rows made are freed; hand them back before pyfim builds its tree.
    release_free_memory()
    # A negative support is an absolute count: no float threshold at all.
    # pyfim rejects zmax=None: leave it out for "no limit".
    limit = {} if max_len is None else {"zmax": max_len}
    found = fim.fpgrowth(rows, target="s", supp=-min_count, report="a", **limit)
    del rows
    everywhere, longest = everywhere_itemsets(transactions, width, max_len)
    n = transactions.playlists
    found.extend(
        (combo, n)
        for size in range(1, longest + 1)
        for combo in itertools.combinations(everywhere, size)
    )
    flat, lengths, counts = _to_arrays(found)
    return ItemsetTable.from_flat(flat, lengths, counts)
