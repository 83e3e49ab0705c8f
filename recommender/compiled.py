"""The compiled small-query path (recommender/_smallquery.c), when ``pip install`` built it.

The same steps as :class:`recommender.query.SmallQueryPath` over the same arrays, with its own
open-addressing table of antecedent hashes instead of the dict, and for ``sum`` a tally of each
candidate's sum and best key (an array over song ids, or a hash table of the query's own past
DENSE_TALLY_SONGS songs) plus a heap of the ``limit`` best; the array tally stops reading once the
best are decided, and then only completes their sums (from a bitmap of each long run's
consequents). The server uses it when it is
built: inside the server every interpreted step pays for caches cooled by aiohttp's own code
(benchmarks/serve_throughput.py --split measures the difference). The Python path stays the
reference the tests hold it to, and the fallback without a C compiler.
"""

from __future__ import annotations

from recommender.index import RuleIndex
from recommender.names import NameIndex

# The compiled sum ranking tallies in an array over song ids up to this many songs (its
# largest), in a hash table above; the tests lower it to hold both to the brute force.
DENSE_TALLY_SONGS = 1 << 18
# The array tally reads this many rules of each run before it first checks whether it can stop
# early with the same answer (see dense_sum_ranking in the C file); 0: it reads every rule. The
# tests lower it to 1, so small rule sets stop early too.
SUM_DEPTH = 32
# A run of at least (songs / BITMAP_SHARE) rules keeps a bitmap of its consequents, from which
# the early stop completes its contenders' sums (see finish_contenders_by_bitmap in the C file);
# 0: none. The tests raise it so that every run has one.
BITMAP_SHARE = 16

try:
    from recommender._smallquery import SmallQueryIndex as SmallQueryIndex  # noqa: PLC0414 (re-exported)
except ImportError:  # built without a C compiler: the Python path gives the same answers
    SmallQueryIndex = None  # type: ignore[assignment,misc]


def compiled_small_query(index: RuleIndex, names: NameIndex | None = None) -> SmallQueryIndex:
    """The compiled small-query path over ``index``; ImportError if it was not built.

    With ``names`` (the same rule set's) it also answers queries of exact names straight to
    the answer's JSON (``answer_json``), the server's path: one call instead of resolving the
    names, answering and joining the names in Python (benchmarks/serve_throughput.py).
    """
    if SmallQueryIndex is None:
        raise ImportError("recommender._smallquery was not built (no C compiler at install)")
    # Checked and its hash table built with the GIL released.
    return SmallQueryIndex(
        codes=index.song_codes,
        group_hashes=index.group_hashes,
        group_starts=index.group_starts,
        group_rows=index.group_rows,
        row_width=index.row_width,
        keys=index.keys,
        consequents=index.consequents,
        weights=index.weights,
        tie_songs=index.tie_songs,
        popular=index.popular,
        dense_songs=DENSE_TALLY_SONGS,
        sum_depth=SUM_DEPTH,
        bitmap_share=BITMAP_SHARE,
        song_ids=None if names is None else names.exact_ids,
        json_names=None if names is None else names.json_names,
    )
