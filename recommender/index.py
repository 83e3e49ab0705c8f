"""Building the index of one rule set: numpy passes over the rule arrays, no object per rule.

Each rule gets one integer key (confidence rank, then the consequent's tie-break rank) and is
listed under its rarest antecedent song, sorted by antecedent length; the rules of one
antecedent form a run, found by the XOR hash of the antecedent's song codes.
docs/recommender-design.md explains the layout and why it answers exactly.

Building runs in an actor thread while the event loop serves, so it is a handful of numpy
passes (sorts, fancy indexing, most of them releasing the GIL), never a Python loop per rule;
benchmarks/serve_reload.py measures what a reload costs the requests served meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from mining.rulesfile import RuleSet
from recommender.keys import confidence_ranks, confidence_weights

IntArray = npt.NDArray[np.integer]
U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
ArrayT = TypeVar("ArrayT", bound=np.ndarray)
# Song ids: the smallest unsigned type that holds the sentinel song_count.
SongIds = npt.NDArray[np.unsignedinteger]

# Seeds tried for collision-free antecedent hashes.
HASH_ATTEMPTS = 4


@dataclass(frozen=True, eq=False)
class RuleIndex:
    """The arrays every query path reads, all read-only; songs are ids ``0..song_count-1`` and
    ``song_count`` is the sentinel that pads antecedent rows."""

    song_count: int
    rule_count: int
    # Song ids by popularity: playlist count desc, then name asc.
    popular: I64
    # Rules in list order (listed song, antecedent length); bounds[s * (width + 1) + k] is the
    # index of the first rule listed under song s with an antecedent of k songs or more.
    bounds: I64
    width: int
    # Column j: the (j+2)-th rarest antecedent song of each rule, or the sentinel.
    columns: tuple[IntArray, ...]
    consequents: SongIds
    keys: U64
    # The sum ranking's fixed-point confidence of each rule (same order as keys).
    weights: U32
    # Rules of one antecedent are a run in list order, best key first: run g is
    # keys[group_starts[g]:group_starts[g + 1]], its antecedent the row g of group_rows
    # (flattened, each row padded to row_width with the sentinel), its hash group_hashes[g].
    group_starts: I64
    group_rows: SongIds
    row_width: int
    group_hashes: U64
    # Each song's random 64-bit code (0 for a song in no antecedent): an antecedent's hash is
    # the XOR of its songs' codes.
    song_codes: U64
    # Song id by key % song_count (the key's tie-break part names the consequent).
    tie_songs: I64

    @property
    def array_bytes(self) -> int:
        """Bytes held by the arrays the query paths keep (not the build's hashes and codes)."""
        arrays = (
            self.popular,
            self.bounds,
            self.consequents,
            self.keys,
            self.weights,
            *self.columns,
            self.group_starts,
            self.group_rows,
        )
        return sum(a.nbytes for a in arrays)


def readonly(array: ArrayT) -> ArrayT:
    """``array``, made read-only (the index is shared by threads)."""
    array.setflags(write=False)
    return array


def build_index(ruleset: RuleSet) -> RuleIndex:
    """Index ``ruleset`` with vectorised numpy passes (no Python object per rule)."""
    if bool(np.any(ruleset.rule_counts == 0)) or bool(
        np.any(ruleset.rule_counts > ruleset.antecedent_counts)
    ):
        raise ValueError("a rule's count must be from 1 to its antecedent's count")
    n_songs, n_rules = ruleset.header.song_count, ruleset.header.rule_count
    counts = ruleset.song_counts.astype(np.int64)
    name_rank = np.empty(n_songs, dtype=np.int64)
    name_rank[sorted(range(n_songs), key=ruleset.song_names.__getitem__)] = np.arange(n_songs)
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
    # keys.confidence_ranks.
    keys = confidence_ranks(ruleset.rule_counts, ruleset.antecedent_counts).view(np.uint64)
    keys *= np.uint64(n_songs)
    keys += tie_break[ruleset.consequents]
    weights = confidence_weights(ruleset.rule_counts, ruleset.antecedent_counts)
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
    group_rows = readonly(group_rows.reshape(-1))
    return RuleIndex(
        song_count=n_songs,
        rule_count=n_rules,
        popular=readonly(popular),
        bounds=readonly(bounds.astype(np.int64)),
        width=width,
        columns=tuple(readonly(np.ascontiguousarray(rows[:, j])) for j in range(1, rows.shape[1])),
        consequents=readonly(consequents),
        keys=readonly(keys),
        weights=readonly(weights),
        group_starts=readonly(group_starts),
        group_rows=group_rows,
        row_width=rows.shape[1],
        group_hashes=readonly(group_hashes),
        song_codes=readonly(codes[:n_songs].copy()),
        tie_songs=readonly(tie_song),
    )


def song_codes(n_songs: int, attempt: int) -> U64:
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
        codes = song_codes(n_songs, attempt)
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
    # (In place where possible, each temporary dropped once used: see keys.confidence_ranks.)
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
