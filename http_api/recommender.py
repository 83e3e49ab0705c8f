"""The recommendation engine: rules ``A → c`` in, ranked song names out (pure: numpy only).

Semantics: the query Q is deduplicated, each name matched exactly, else by
:func:`normalise_name` (several songs with one normalised form: the most popular wins, then the
smallest name), unknown names ignored (and reported by :meth:`Recommender.explain`). Candidates
are ``{c : A → c, A ⊆ Q, c ∉ Q}``, ranked by one of :data:`RANKINGS`:

- ``best`` (the original contract): the best confidence of a rule giving ``c`` (desc), then the
  best lift (desc), then the name (asc);
- ``sum``: the sum of the confidences of all the distinct rules giving ``c``, each in fixed
  point (``round(confidence · 2^31)``, an exact integer from the counts), so sums are exact
  integers, identical on every path; equal sums fall back to the ``best`` order. Against the
  real-number sum the error is at most ``N · 2^-32`` for ``N`` rules (docs/ranking.md).

If there are fewer than ``limit`` candidates, the most popular songs not in Q and not listed
yet (playlist count desc, then name) fill the rest.

Exact ranking without floats at query time. For one consequent ``c``, lift = confidence ·
n / count(c) is confidence times a constant, so the rule with the best confidence also has
the best lift, and between two candidates of equal confidence the one with the larger lift is
the one with the smaller playlist count. Every rule therefore gets one integer key at build
time, ``confidence rank · songs + tie-break rank of c`` (+1 so 0 means "none"): comparing keys
is comparing (confidence, lift, name) exactly, and the best key of a candidate also names it.

Confidence ranks are exact. They come from sorting the distinct ``count(A∪c)/count(A)``
fractions as float64. IEEE division is correctly rounded and rounding is monotone, so
``x < y`` implies ``fl(x) ≤ fl(y)`` and equal fractions give equal floats (7/10 and 77/110
alike): the float order is never inverted, it can only merge two different fractions into
one float. Two different fractions with denominators ≤ n differ by at least ``1/n²``, while
two reals in (0, 1] rounding to the same float differ by at most one ulp ≤ 2⁻⁵³; so a merge
needs ``n ≥ 2^26.5`` (≈ 95 million playlists; the Spotify Million Playlist set has 10⁶).
Runs of equal floats are still checked with exact integer cross-multiplication and, in that
never-seen case, ordered with :class:`fractions.Fraction`, so the ranking is exact for every
count the rules file can hold.

Finding the rules with ``A ⊆ Q``. Enumerating the subsets of Q (the original server) grows
as ``|Q|^7``. Instead each rule is listed under its *rarest* antecedent song (lowest playlist
count): a song's list is read only when that song is in Q, so a rule is looked at only when
its least likely song was asked for, and every rule sits in exactly one list. Inside a list,
rules are sorted by antecedent length, so a query of ``k`` songs reads only the prefix with
``|A| ≤ k`` (a one-song query reads exactly the rules ``{q} → c``). The subset test on the
rules read is vectorised: a boolean mask of Q over song ids is gathered through one array per
antecedent position holding each rule's other songs, rarest first, padded with a sentinel id
that is always "in Q"; testing the next-rarest song first rejects most non-matches at once
(a 5-song query reads ~1,500 rules and keeps ~10), and each test gathers only from the
survivors of the previous one. The best key per candidate is a scatter-max into an array over
songs (a dict when only a few rules match); the sum ranking adds a scatter-add of the weights.
The work is bounded by the number of rules whatever |Q| is: benchmarks/recommend.py prints the
figures for 1 to 1,000 songs.

Small queries (at most ``FEW_QUERY_SONGS`` known songs, the common case) take another path,
because each numpy call costs ~1 µs before doing anything and a 5-song scan makes ~20 of them.
The rules of one antecedent form a run in list order, sorted by key, best first. Each song has
a random 64-bit code and an antecedent's hash is the XOR of its songs' codes (drawn again in
the unlikely case two antecedents share one), so the 2^k - 1 subsets of Q get their hashes by
doubling a list, and a dict maps each antecedent's hash to its run. A hit is checked against
the antecedent's songs, so the answer is exact. Then, in plain Python for ``best``: the first
``limit + |Q|`` keys of each run found (a run names each consequent once, so the rest cannot
make the answer), sorted best first, consequents read off the keys, Q and repeats skipped. The
``sum`` ranking needs every rule of every run found (each one adds to a sum): the runs are
concatenated and ranked by the scan path's numpy code. The dict (one entry per antecedent,
~100k for 230k rules) is the only per-rule-scale Python object, built from two lists in slices;
the runs are memoryviews of the numpy arrays.

That path also exists compiled (``http_api/_smallquery.c``, built by ``pip install`` when a C
compiler is there): the same steps over the same arrays, with its own open-addressing table of
antecedent hashes instead of the dict, and for ``sum`` a small hash table of the query's own
(song → sum and best key) plus a heap of the ``limit`` best. It is what the server
uses when it is built: in the server every interpreted step pays for caches cooled by aiohttp's
own code, and a recommendation costs ~12 µs of server CPU per request on the Python path
against ~4 µs with the compiled one (benchmarks/serve_throughput.py --split). The Python path
stays as the reference the tests hold the compiled one to, and as the fallback without a
compiler.

Autocomplete (:meth:`Recommender.search`): names whose normalised form starts with the
normalised query come from a bisection of the sorted normalised names (the ``limit`` most
popular of that range by a partial sort), then names containing it from a scan of one string
holding the normalised names in popularity order, one per line: the first hits are the most
popular, so the scan stops after ``limit`` of them, and a miss costs one pass over the string.

Building runs in an actor thread while the event loop serves, so it is a handful of numpy
passes over the rule arrays (sorts, fancy indexing: a few ms each on 300k rules, most of them
releasing the GIL), Python objects per song (the name tables) and the antecedent dict (two
ints per antecedent; not tracked by the garbage collector), never per rule.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from mining.rulesfile import RuleSet

try:
    # Re-exported (the `as` says so to mypy): its tests and benchmarks ask whether it was built.
    from http_api._smallquery import SmallQueryIndex as SmallQueryIndex  # noqa: PLC0414
except ImportError:  # built without a C compiler: the Python path gives the same answers
    SmallQueryIndex = None  # type: ignore[assignment,misc]

IntArray = npt.NDArray[np.integer]
U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ArrayT = TypeVar("ArrayT", bound=np.ndarray)

# Below these sizes a Python loop beats the fixed cost of the equivalent numpy calls (~1 µs
# each): concatenating the query songs' rule ranges, and keeping the best rule per candidate.
FEW_SONGS = 16
FEW_MATCHES = 64
# Queries of at most this many known songs enumerate their subsets (2^k - 1 hash lookups)
# instead of scanning every rule listed under their songs: benchmarks/recommend.py prints both.
FEW_QUERY_SONGS = 8
# Seeds tried for collision-free antecedent hashes, and the slice of the antecedent dict built
# per call (one call holds the GIL; ~1 ms per 16k entries).
HASH_ATTEMPTS = 4
GROUP_DICT_SLICE = 16384

# How candidates are ranked (see the module docstring); the server's RANKING picks one.
RANKINGS = ("best", "sum")
# The server's default: on real playlists the sum beats the best rule (docs/ranking.md).
DEFAULT_RANKING = "sum"
# The sum ranking's fixed point: a confidence c is the integer round(c · 2^WEIGHT_BITS). With
# c ≤ 1 a weight fits in uint32, and a sum of fewer than 2^33 of them in uint64.
WEIGHT_BITS = 31
# The compiled sum ranking tallies in an array over song ids up to this many songs (its
# largest), in a hash table above; the tests lower it to hold both to the brute force.
DENSE_TALLY_SONGS = 1 << 18
# At most this many unknown query songs are reported back.
UNKNOWN_LIST_LIMIT = 20
# Whether each ranking sums (what the query paths take).
_SUMMED = {ranking: ranking == "sum" for ranking in RANKINGS}


class Recommendation(NamedTuple):
    """An answer and where it comes from."""

    songs: list[str]
    # How many of ``songs``, from the start, came from rules; the rest are popular fill.
    from_rules: int
    # The query songs the model does not know: deduplicated, in request order, at most
    # UNKNOWN_LIST_LIMIT.
    unknown: list[str]


def normalise_name(name: str) -> str:
    """The form names are matched and searched by: NFC, casefolded, whitespace trimmed/collapsed.

    Casefolding can undo composition ("ǰ" folds to "j" + combining caron), hence NFC on both
    sides. Inner whitespace runs collapse to one space so "Hey  Jude" finds "Hey Jude", and a
    normalised name never holds a newline (the search text relies on that).
    """
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    return " ".join(folded.split())


def _readonly(array: ArrayT) -> ArrayT:
    array.setflags(write=False)
    return array


def _confidence_ranks(rule_counts: IntArray, antecedent_counts: IntArray) -> I64:
    """Dense rank of each rule's confidence ``rule_count/antecedent_count`` (0 = lowest), exact."""
    if not len(rule_counts):
        return np.zeros(0, dtype=np.int64)
    pairs = (rule_counts.astype(np.uint64) << np.uint64(32)) | antecedent_counts.astype(np.uint64)
    # np.unique(return_inverse=True) by hand: numpy's holds the GIL for tens of ms on 300k rules.
    # Temporaries of a rule's size are dropped as soon as they are used: on a million rules
    # each is 8 MB, and the build's peak is what a reload adds to the server's memory.
    n_rules = len(pairs)
    by_pair = np.argsort(pairs, kind="stable")
    sorted_pairs = pairs[by_pair]
    del pairs
    first = np.empty(n_rules, dtype=np.bool_)
    first[0] = True
    np.not_equal(sorted_pairs[1:], sorted_pairs[:-1], out=first[1:])
    distinct = sorted_pairs[first]
    del sorted_pairs
    rule_pair = np.empty(n_rules, dtype=np.int64)
    rule_pair[by_pair] = np.cumsum(first) - 1
    del by_pair, first
    numerators = distinct >> np.uint64(32)
    denominators = distinct & np.uint64(0xFFFFFFFF)
    values = numerators.astype(np.float64) / denominators.astype(np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    same_float = sorted_values[1:] == sorted_values[:-1]
    if bool(same_float.any()):
        # Products of two uint32 fit in uint64: an exact comparison of a/b and c/d.
        num, den = numerators[order], denominators[order]
        merged = np.flatnonzero(same_float & (num[1:] * den[:-1] != num[:-1] * den[1:]))
        if len(merged):
            order = _order_merged_runs(order, sorted_values, merged, numerators, denominators)
    num, den = numerators[order], denominators[order]
    new_value = num[1:] * den[:-1] != num[:-1] * den[1:]
    rank_in_order = np.concatenate(([0], np.cumsum(new_value, dtype=np.int64)))
    rank_of_distinct = np.empty(len(distinct), dtype=np.int64)
    rank_of_distinct[order] = rank_in_order
    return rank_of_distinct[rule_pair]


def _order_merged_runs(
    order: I64, sorted_values: npt.NDArray[np.float64], merged: I64, num: U64, den: U64
) -> I64:
    """Re-sort exactly each run of equal floats holding a merge (``merged``: its positions)."""
    order = order.copy()
    run_starts = np.flatnonzero(np.diff(sorted_values, prepend=-1.0) != 0)
    run_ends = np.append(run_starts[1:], len(order))
    for run in np.unique(np.searchsorted(run_starts, merged, side="right") - 1).tolist():
        start, end = int(run_starts[run]), int(run_ends[run])
        order[start:end] = sorted(
            order[start:end].tolist(), key=lambda i: Fraction(int(num[i]), int(den[i]))
        )
    return order


def _confidence_weights(rule_counts: IntArray, antecedent_counts: IntArray) -> U32:
    """Each rule's confidence in fixed point, ``round(count(A∪c) · 2^WEIGHT_BITS / count(A))``
    (halves up), computed exactly in integers."""
    numerators = rule_counts.astype(np.uint64) << np.uint64(WEIGHT_BITS)
    denominators = antecedent_counts.astype(np.uint64)
    # floor((n + floor(d/2)) / d) is floor(n/d + 1/2): for an odd d, n/d + 1/2 is never whole.
    # No overflow: counts are uint32, so n + d/2 < 2^63.
    weights = (numerators + (denominators >> np.uint64(1))) // denominators
    return weights.astype(np.uint32)


def _song_codes(n_songs: int, attempt: int) -> U64:
    """Random 64-bit codes for songs 0..n-1 and 0 for the sentinel n; a set hashes to their XOR."""
    codes = np.random.default_rng(attempt).integers(
        0, np.iinfo(np.uint64).max, size=n_songs + 1, dtype=np.uint64, endpoint=True
    )
    codes[n_songs] = 0
    return codes


def _group_by_antecedent(
    rows: IntArray, list_key: I64, keys: U64, consequents: IntArray, n_songs: int
) -> tuple[I64, I64, U64, U64]:
    """Order rules by (list key, antecedent, key desc), each ``A → c`` once (its best key).

    Returns the order, the start of each antecedent's run (plus the end), each antecedent's
    hash, and the song codes that give distinct antecedents distinct hashes (new codes are
    drawn in the ~2⁻³⁰ chance that two of ~10⁵ antecedents share a 64-bit hash).
    """
    n_rules = len(rows)
    # Each row as one opaque item, so that whole antecedents are gathered and compared at once.
    antecedents = rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).reshape(-1)
    for attempt in range(HASH_ATTEMPTS):
        codes = _song_codes(n_songs, attempt)
        hashes = np.zeros(n_rules, dtype=np.uint64)
        for column in rows.T:
            hashes ^= codes[column]
        by_hash = np.argsort(hashes)
        sorted_hashes = hashes[by_hash]
        del hashes
        same_hash = sorted_hashes[1:] == sorted_hashes[:-1]
        # Two antecedents sharing a hash leave two different neighbours inside its run.
        sorted_antecedents = antecedents[by_hash]
        differ = sorted_antecedents[1:] != sorted_antecedents[:-1]
        if not bool(np.any(differ & same_hash)):
            break
    else:
        raise RuntimeError(f"no collision-free antecedent hashes in {HASH_ATTEMPTS} attempts")
    del sorted_antecedents, differ
    first = np.ones(n_rules, dtype=np.bool_)
    np.logical_not(same_hash, out=first[1:])
    group_hashes = sorted_hashes[first]
    del sorted_hashes, same_hash
    group = np.empty(n_rules, dtype=np.int64)
    group[by_hash] = np.cumsum(first) - 1
    # Antecedents in list order, then each one's rules by key, best first: one sort of
    # (antecedent position << 32 | key position), which fits as rule counts are uint32.
    # (In place where possible, each temporary dropped once used: see _confidence_ranks.)
    in_list_order = np.argsort(list_key[by_hash[first]])
    del by_hash
    position = np.empty(len(in_list_order), dtype=np.uint64)
    position[in_list_order] = np.arange(len(in_list_order), dtype=np.uint64)
    by_key = np.argsort(~keys)
    sort_key = np.empty(n_rules, dtype=np.uint64)
    sort_key[by_key] = np.arange(n_rules, dtype=np.uint64)
    del by_key
    shifted = position[group]
    shifted <<= np.uint64(32)
    sort_key |= shifted
    del shifted
    order = np.argsort(sort_key)
    del sort_key
    # The same rule twice (a rules file may hold it): keep its first, best-keyed entry, so that
    # an antecedent's run names each consequent once (the small-query path relies on that).
    pairs = group[order].view(np.uint64)
    pairs *= np.uint64(n_songs + 1)
    pairs += consequents[order]
    sorted_pairs = np.sort(pairs)
    repeated = bool(np.any(sorted_pairs[1:] == sorted_pairs[:-1]))
    del sorted_pairs
    if repeated:
        by_pair = np.argsort(pairs, kind="stable")
        repeat = np.zeros(n_rules, dtype=np.bool_)
        repeat[by_pair[1:]] = pairs[by_pair[1:]] == pairs[by_pair[:-1]]
        order = order[~repeat]
    ordered_groups = group[order]
    starts = np.flatnonzero(np.diff(ordered_groups, prepend=-1))
    starts = np.append(starts, len(order))
    return order, starts, group_hashes[in_list_order], codes


@dataclass(frozen=True, eq=False)
class Recommender:
    """An immutable index over one rule set: recommendations and name search (thread-safe)."""

    song_names: tuple[str, ...]
    song_count: int
    rule_count: int
    # The ranking of recommend and explain (one of RANKINGS); explain_json may name another.
    ranking: str
    # Song ids by popularity: playlist count desc, then name asc.
    _popular: I64
    _exact_ids: dict[str, int]
    _normalised_ids: dict[str, int]
    # Rules in list order (listed song, antecedent length); _bounds[s * (width + 1) + k] is the
    # index of the first rule listed under song s with an antecedent of k songs or more.
    _bounds: I64
    _width: int
    # Column j: the (j+2)-th rarest antecedent song of each rule, or the sentinel.
    _columns: tuple[IntArray, ...]
    _consequents: IntArray
    _keys: U64
    # The sum ranking's fixed-point confidence of each rule (same order as _keys).
    _weights: U32
    # Small queries. Rules of one antecedent are a run in list order, best key first; run g is
    # _keys_view[_group_starts[g]:_group_starts[g + 1]], its antecedent _group_rows[g] (padded
    # to _row_width with the sentinel), found by its hash in _groups. Memoryviews share the
    # arrays' memory and give Python ints without a numpy call per access.
    _song_codes: list[int]
    _groups: dict[int, int] | None
    _group_starts: memoryview
    _group_rows: memoryview
    _row_width: int
    _keys_view: memoryview
    # The compiled small-query path over the same arrays (None: the Python path above).
    _compiled: SmallQueryIndex | None
    # Song id by key % song_count (the key's tie-break part names the consequent).
    _tie_songs: list[int]
    _popular_list: list[int]
    # Each name as a JSON string (json.dumps), for recommend_json.
    _json_names: tuple[bytes, ...]
    # Search. Prefixes: the normalised names sorted, and each one's popularity position.
    _sorted_names: list[str]
    _sorted_positions: I64
    # Substrings: the normalised names in popularity order, one per line, and the line starts.
    _search_text: str
    _line_starts: list[int]

    @classmethod
    def from_ruleset(
        cls, ruleset: RuleSet, *, compiled: bool | None = None, ranking: str = "best"
    ) -> Recommender:
        """Build the index with vectorised numpy passes (no Python object per rule).

        ``compiled``: answer small queries with the compiled path (True; ImportError when it
        was not built), the Python path (False), or the compiled one when it was built (None).
        ``ranking``: the one of :data:`RANKINGS` that ``recommend`` and ``explain`` use (the
        index serves every ranking).
        """
        if ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}, not {ranking!r}")
        if bool(np.any(ruleset.rule_counts == 0)) or bool(
            np.any(ruleset.rule_counts > ruleset.antecedent_counts)
        ):
            raise ValueError("a rule's count must be from 1 to its antecedent's count")
        if compiled and SmallQueryIndex is None:
            raise ImportError("http_api._smallquery was not built (no C compiler at install)")
        use_compiled = SmallQueryIndex is not None if compiled is None else compiled
        names = ruleset.song_names
        n_songs, n_rules = ruleset.header.song_count, ruleset.header.rule_count
        counts = ruleset.song_counts.astype(np.int64)
        name_rank = np.empty(n_songs, dtype=np.int64)
        name_rank[sorted(range(n_songs), key=names.__getitem__)] = np.arange(n_songs)
        popular = np.lexsort((name_rank, -counts))
        # Equal confidence: the larger lift (smaller playlist count) wins, then the smaller name.
        tie_break = np.empty(n_songs, dtype=np.uint64)
        tie_break[np.lexsort((name_rank, counts))] = np.arange(n_songs, 0, -1, dtype=np.uint64)

        song_id_type = np.min_scalar_type(n_songs)  # ids 0..n-1 plus the sentinel n
        offsets = ruleset.antecedent_offsets.astype(np.int64)
        lengths = np.diff(offsets)
        width = int(lengths.max()) if n_rules else 0
        # Each antecedent as a row of song ids, rarest first (playlist count, then id), padded
        # with the sentinel n: column 0 is the song the rule is listed under; the others are
        # tested rarest first, so the first test already rejects most rules that do not match.
        by_rarity = np.append(np.lexsort((np.arange(n_songs), counts)), n_songs)
        by_rarity = by_rarity.astype(song_id_type)
        rarity = np.empty(n_songs + 1, dtype=song_id_type)
        rarity[by_rarity] = np.arange(n_songs + 1)
        rows = np.full((n_rules, max(width, 1)), n_songs, dtype=song_id_type)
        # Entry e of rule r goes to row r, column e - offsets[r] of the flattened matrix: +1
        # from one entry to the next, a jump at each rule's first entry. (A cumulative sum,
        # not np.repeat, which holds the GIL throughout.)
        flat = np.ones(len(ruleset.antecedent_songs), dtype=np.int64)
        if len(flat):
            flat[0] = 0
            flat[offsets[1:-1]] = rows.shape[1] - lengths[:-1] + 1
        np.cumsum(flat, out=flat)
        rows.reshape(-1)[flat] = rarity[ruleset.antecedent_songs]
        del flat  # the largest temporary (one int64 per antecedent song): gone before the sort
        rows.sort(axis=1)
        # A song named twice in one antecedent counts once (A is a set): the repeat becomes
        # padding, so the length below is the number of distinct songs.
        repeated = (rows[:, 1:] == rows[:, :-1]) & (rows[:, 1:] != n_songs)
        if bool(repeated.any()):
            rows[:, 1:][repeated] = n_songs
            rows.sort(axis=1)
            lengths = np.count_nonzero(rows != n_songs, axis=1)
        del repeated
        rows = by_rarity[rows]
        list_key = rows[:, 0].astype(np.int64)
        list_key *= width + 1
        list_key += lengths
        del offsets, lengths
        # Temporaries of a rule's size dropped once used, products in place: see
        # _confidence_ranks.
        keys = _confidence_ranks(ruleset.rule_counts, ruleset.antecedent_counts).view(np.uint64)
        keys *= np.uint64(n_songs)
        keys += tie_break[ruleset.consequents]
        weights = _confidence_weights(ruleset.rule_counts, ruleset.antecedent_counts)
        order, group_starts, group_hashes, codes = _group_by_antecedent(
            rows, list_key, keys, ruleset.consequents, n_songs
        )
        bounds = np.searchsorted(list_key[order], np.arange(n_songs * (width + 1) + 1))
        rows = rows[order]
        consequents = ruleset.consequents[order].astype(song_id_type)
        keys = keys[order]
        weights = weights[order]
        group_rows = np.ascontiguousarray(rows[group_starts[:-1]])
        # Songs in no antecedent take no part in enumerating a query's subsets (code 0).
        in_antecedents = np.zeros(n_songs + 1, dtype=np.bool_)
        in_antecedents[rows] = True
        codes[~in_antecedents] = 0
        tie_song = np.empty(n_songs, dtype=np.int64)
        tie_song[tie_break % np.uint64(max(n_songs, 1))] = np.arange(n_songs)
        group_rows = _readonly(group_rows.reshape(-1))
        groups: dict[int, int] | None = None
        small: SmallQueryIndex | None = None
        if use_compiled:
            # Checked and its hash table built with the GIL released (~1 ms for 97k antecedents).
            small = SmallQueryIndex(
                codes=_readonly(codes[:n_songs].copy()),
                group_hashes=group_hashes,
                group_starts=_readonly(group_starts),
                group_rows=group_rows,
                row_width=rows.shape[1],
                keys=_readonly(keys),
                consequents=_readonly(consequents),
                weights=_readonly(weights),
                tie_songs=_readonly(tie_song),
                popular=_readonly(popular),
                dense_songs=DENSE_TALLY_SONGS,
            )
        else:
            groups = {}
            hashes = group_hashes.tolist()
            # In slices: one dict(zip(...)) call holds the GIL throughout, and this runs on an
            # actor thread while the event loop serves.
            for start in range(0, len(hashes), GROUP_DICT_SLICE):
                stop = start + GROUP_DICT_SLICE
                groups.update(
                    zip(hashes[start:stop], range(start, min(stop, len(hashes))), strict=True)
                )

        # Name tables, indexed by popularity position (Python objects per song, not per rule).
        normalised = [normalise_name(names[song]) for song in popular.tolist()]
        normalised_ids: dict[str, int] = {}
        for song, form in zip(popular.tolist(), normalised, strict=True):
            normalised_ids.setdefault(form, song)
        line_starts = [1]
        for form in normalised:
            line_starts.append(line_starts[-1] + len(form) + 1)
        by_name = sorted(range(n_songs), key=normalised.__getitem__)

        return cls(
            song_names=names,
            song_count=n_songs,
            rule_count=n_rules,
            ranking=ranking,
            _popular=_readonly(popular),
            _exact_ids={name: song for song, name in enumerate(names)},
            _normalised_ids=normalised_ids,
            _bounds=_readonly(bounds.astype(np.int64)),
            _width=width,
            _columns=tuple(
                _readonly(np.ascontiguousarray(rows[:, j])) for j in range(1, rows.shape[1])
            ),
            _consequents=_readonly(consequents),
            _keys=_readonly(keys),
            _weights=_readonly(weights),
            _song_codes=codes[:n_songs].tolist(),
            _groups=groups,
            _group_starts=_readonly(group_starts).data,
            _group_rows=group_rows.data,
            _row_width=rows.shape[1],
            _keys_view=keys.data,
            _compiled=small,
            _tie_songs=tie_song.tolist(),
            _popular_list=popular.tolist(),
            _json_names=tuple(json.dumps(name).encode() for name in names),
            _sorted_names=[normalised[position] for position in by_name],
            _sorted_positions=_readonly(np.array(by_name, dtype=np.int64)),
            _search_text="\n" + "".join(form + "\n" for form in normalised),
            _line_starts=line_starts,
        )

    @property
    def index_bytes(self) -> int:
        """Bytes held by the index's numpy arrays (the name tables are per song, not per rule)."""
        arrays = (
            self._popular,
            self._bounds,
            self._consequents,
            self._keys,
            self._weights,
            *self._columns,
        )
        views = (self._group_starts, self._group_rows)
        table = 0 if self._compiled is None else self._compiled.table_bytes
        return sum(a.nbytes for a in arrays) + sum(v.nbytes for v in views) + table

    def match(self, songs: Sequence[str]) -> list[int]:
        """The distinct song ids a query names (exact name, else normalised form; unknown: none)."""
        return self._resolve(songs)[0]

    def _resolve(self, songs: Sequence[str]) -> tuple[list[int], list[str]]:
        """The distinct song ids a query names, and its first UNKNOWN_LIST_LIMIT distinct names
        that name no song, in query order."""
        found: dict[int, None] = {}
        unknown: list[str] = []
        for name in dict.fromkeys(songs):
            song = self._exact_ids.get(name)
            if song is None:
                song = self._normalised_ids.get(normalise_name(name))
                if song is None:
                    if len(unknown) < UNKNOWN_LIST_LIMIT:
                        unknown.append(name)
                    continue
            found[song] = None
        return list(found), unknown

    def recommend(self, songs: Sequence[str], limit: int = 10) -> list[str]:
        """Up to ``limit`` song names for a query, rule-based first, then the most popular."""
        return self.explain(songs, limit).songs

    def explain(
        self, songs: Sequence[str], limit: int = 10, *, ranking: str | None = None
    ) -> Recommendation:
        """``recommend``'s answer, how many of its songs came from rules, and the query songs
        the model does not know; ``ranking`` (one of RANKINGS) overrides the index's own."""
        ids, from_rules, unknown = self._answer(songs, limit, ranking)
        names = self.song_names
        return Recommendation([names[song] for song in ids], from_rules, unknown)

    def recommend_json(self, songs: Sequence[str], limit: int = 10) -> bytes:
        """``recommend``'s answer as a JSON array, exactly as ``json.dumps`` writes it."""
        return self.explain_json(songs, limit)[0]

    def explain_json(
        self, songs: Sequence[str], limit: int = 10, *, ranking: str | None = None
    ) -> tuple[bytes, int, list[str]]:
        """``explain``'s answer with its songs as a JSON array, exactly as ``json.dumps`` writes
        it, then ``from_rules`` and ``unknown``.

        Built from each name encoded once per rule set: a third of the cost of encoding the
        list per request.
        """
        ids, from_rules, unknown = self._answer(songs, limit, ranking)
        songs_json = b"[" + b", ".join(map(self._json_names.__getitem__, ids)) + b"]"
        return songs_json, from_rules, unknown

    def _answer(
        self, songs: Sequence[str], limit: int, ranking: str | None
    ) -> tuple[list[int], int, list[str]]:
        """The answer as song ids, how many came from rules, and the unknown query songs:
        subset lookups for a few known songs, else the scan."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        summed = _SUMMED.get(self.ranking if ranking is None else ranking)
        if summed is None:
            raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}, not {ranking!r}")
        matched, unknown = self._resolve(songs)
        if len(matched) > FEW_QUERY_SONGS:
            ids, from_rules = self._scan_ids(matched, limit, summed)
        elif self._compiled is not None:
            ids, from_rules = self._compiled.answer(matched, limit, summed)
        else:
            ids, from_rules = self._few_query_ids(matched, limit, summed)
        return ids, from_rules, unknown

    def _scan_ids(self, matched: list[int], limit: int, summed: bool) -> tuple[list[int], int]:
        """The answer for many songs (the vectorised scan), and how many came from rules."""
        query = np.array(matched, dtype=np.int64)
        in_query = np.zeros(self.song_count + 1, dtype=np.bool_)
        in_query[query] = True
        in_query[self.song_count] = True  # the padding sentinel counts as present
        chosen = self._rule_candidates(query, in_query, limit, summed)
        from_rules = len(chosen)
        if from_rules < limit:
            excluded = in_query[:-1].copy()
            excluded[chosen] = True
            head = self._popular[: limit + len(query) + len(chosen)]
            fill = head[~excluded[head]][: limit - len(chosen)]
            chosen = np.concatenate((chosen, fill))
        scanned: list[int] = chosen.tolist()
        return scanned, from_rules

    def _few_query_ids(self, query: list[int], limit: int, summed: bool) -> tuple[list[int], int]:
        """The answer for a few songs (look up each subset of Q, rank the runs found in
        Python), and how many came from rules."""
        codes = self._song_codes
        subsets = [0]
        for song in query:
            code = codes[song]
            if code:
                subsets += [subset ^ code for subset in subsets]
        # Q and the sentinel that pads antecedent rows: a row is a subset of Q iff its songs
        # all are in here. Chosen songs join it, so it is also "not to be listed again".
        excluded = set(query)
        excluded.add(self.song_count)
        assert self._groups is not None, "built for the compiled path"
        groups, rows, width = self._groups, self._group_rows, self._row_width
        # A hash match is checked against the antecedent itself: exact, not probable.
        hits = [
            group
            for subset in subsets[1:]
            if (group := groups.get(subset)) is not None
            and excluded.issuperset(rows[group * width : group * width + width])
        ]
        chosen = (
            self._summed_runs(hits, query, limit)
            if summed
            else self._best_of_runs(hits, excluded, limit)
        )
        from_rules = len(chosen)
        excluded.update(chosen)
        # Skips at most |excluded| songs before the answer is full.
        for song in self._popular_list:
            if len(chosen) == limit:
                break
            if song not in excluded:
                chosen.append(song)
        return chosen, from_rules

    def _best_of_runs(self, hits: list[int], excluded: set[int], limit: int) -> list[int]:
        """The ``best`` candidates of the runs ``hits`` outside ``excluded``, best first (at
        most ``limit``); they join ``excluded``."""
        starts, keys = self._group_starts, self._keys_view
        # A run names each consequent once, so its first `limit + |Q|` keys hold its best
        # `limit` candidates outside Q: the rest of the run cannot reach the answer.
        most = limit + len(excluded) - 1
        pool: list[int] = []
        for group in hits:
            start = starts[group]
            pool += keys[start : min(starts[group + 1], start + most)]
        pool.sort(reverse=True)
        # Plain loops: for a few dozen items they beat dict.fromkeys/filterfalse/islice chains,
        # whose set-up costs more than the loop.
        chosen: list[int] = []
        tie_songs, n_songs = self._tie_songs, self.song_count
        for key in pool:
            song = tie_songs[key % n_songs]
            if song not in excluded:
                excluded.add(song)
                chosen.append(song)
                if len(chosen) == limit:
                    break
        return chosen

    def _summed_runs(self, hits: list[int], query: list[int], limit: int) -> list[int]:
        """The ``sum`` candidates of the runs ``hits`` outside Q, best first (at most
        ``limit``): every rule of every run counts, so whole runs, ranked as the scan ranks."""
        if not hits:
            return []
        starts = self._group_starts
        rules = np.concatenate([np.arange(starts[group], starts[group + 1]) for group in hits])
        in_query = np.zeros(self.song_count + 1, dtype=np.bool_)
        in_query[query] = True
        ranked: list[int] = self._ranked(rules, in_query, limit, summed=True).tolist()
        return ranked

    def _rule_candidates(self, query: I64, in_query: BoolArray, limit: int, summed: bool) -> I64:
        """Consequents of the rules with ``A ⊆ Q`` and ``c ∉ Q``, best first, at most ``limit``."""
        if not len(query) or not self.rule_count:
            return np.zeros(0, dtype=np.int64)
        longest = min(len(query), self._width)
        row = query * (self._width + 1)
        starts = self._bounds[row]
        stops = self._bounds[row + longest + 1]
        if len(query) <= FEW_SONGS:
            rules = np.concatenate(
                [np.arange(a, b) for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
            )
        else:
            # The concatenation of the ranges [start, stop), without a loop per song.
            sizes = stops - starts
            offsets = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
            rules = np.arange(len(offsets)) + offsets
        # Rules read have at most `longest` songs, so at most `longest - 1` other songs; each
        # test shrinks the set the next one gathers from.
        for column in self._columns[: longest - 1]:
            rules = rules[in_query[column[rules]]]
        return self._ranked(rules, in_query, limit, summed)

    def _ranked(self, rules: I64, in_query: BoolArray, limit: int, summed: bool) -> I64:
        """The consequents not in Q of ``rules`` (all with ``A ⊆ Q``), best first, at most
        ``limit``: by best key, or by sum of weights then best key."""
        consequents = self._consequents[rules]
        allowed = ~in_query[consequents]
        rules, consequents = rules[allowed], consequents[allowed]
        keys = self._keys[rules]
        if summed:
            return self._by_sum(consequents, keys, self._weights[rules], limit)
        if len(keys) <= FEW_MATCHES:
            best: dict[int, int] = {}
            for consequent, key in zip(consequents.tolist(), keys.tolist(), strict=True):
                if key > best.get(consequent, 0):
                    best[consequent] = key
            ranked = sorted(best, key=best.__getitem__, reverse=True)[:limit]
            return np.array(ranked, dtype=np.int64)
        scores = np.zeros(self.song_count, dtype=np.uint64)
        np.maximum.at(scores, consequents, keys)
        candidates = np.flatnonzero(scores != 0)
        scores = scores[candidates]
        if len(candidates) > limit:
            top = np.argpartition(scores, len(scores) - limit)[len(scores) - limit :]
            candidates, scores = candidates[top], scores[top]
        return candidates[np.argsort(scores)[::-1]]

    def _by_sum(self, consequents: IntArray, keys: U64, weights: U32, limit: int) -> I64:
        """Candidates by the sum of their rules' weights, then their best key (distinct per
        candidate, so the order is total), at most ``limit``."""
        if len(keys) <= FEW_MATCHES:
            sums: dict[int, int] = {}
            best: dict[int, int] = {}
            for consequent, key, weight in zip(
                consequents.tolist(), keys.tolist(), weights.tolist(), strict=True
            ):
                sums[consequent] = sums.get(consequent, 0) + weight
                if key > best.get(consequent, 0):
                    best[consequent] = key
            ranked = sorted(sums, key=lambda song: (sums[song], best[song]), reverse=True)
            return np.array(ranked[:limit], dtype=np.int64)
        totals = np.zeros(self.song_count, dtype=np.uint64)
        np.add.at(totals, consequents, weights.astype(np.uint64))
        best_keys = np.zeros(self.song_count, dtype=np.uint64)
        np.maximum.at(best_keys, consequents, keys)
        candidates = np.flatnonzero(best_keys)
        sums_of, keys_of = totals[candidates], best_keys[candidates]
        if len(candidates) > limit:
            # Every candidate whose sum reaches the limit-th largest, equal sums at the edge
            # included, so that the keys can order them.
            edge = np.partition(sums_of, len(sums_of) - limit)[len(sums_of) - limit]
            keep = sums_of >= edge
            candidates, sums_of, keys_of = candidates[keep], sums_of[keep], keys_of[keep]
        return candidates[np.lexsort((keys_of, sums_of))[::-1][:limit]]

    def search(self, query: str, limit: int = 10) -> list[str]:
        """Autocomplete: names starting with the query, then containing it; most popular first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        needle = normalise_name(query)
        if not needle:
            return [self.song_names[song] for song in self._popular[:limit].tolist()]
        # Popularity positions: position p is the song self._popular[p].
        low = bisect_left(self._sorted_names, needle)
        above = _successor(needle)
        high = len(self._sorted_names) if above is None else bisect_left(self._sorted_names, above)
        positions = self._sorted_positions[low:high]
        if len(positions) > limit:
            positions = np.partition(positions, limit - 1)[:limit]
        found = dict.fromkeys(np.sort(positions).tolist())
        # Lines of the search text are in popularity order, so the first hits are the most
        # popular; a hit jumps to the next line, so the work is bounded by `limit` (a miss
        # costs one scan of the text: ~70 µs for 5,000 names).
        text, starts = self._search_text, self._line_starts
        at = text.find(needle) if len(found) < limit else -1
        while at >= 0 and len(found) < limit:
            line = bisect_right(starts, at) - 1
            found.setdefault(line, None)
            at = text.find(needle, starts[line + 1])
        popular = self._popular
        return [self.song_names[int(popular[position])] for position in found]


def _successor(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None: no such string)."""
    stripped = prefix.rstrip(chr(sys.maxunicode))
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)
