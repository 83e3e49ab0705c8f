"""The recommender's query paths in Python: the vectorised scan, and the small-query path.

Both answer with song ids, best first, then how many came from rules; popular songs fill the
rest. The scan reads the rules listed under each query song (at most those with ``|A| ≤ |Q|``)
and tests ``A ⊆ Q`` with a mask of Q gathered through one array per antecedent position; its
work is bounded by the number of rules whatever ``|Q|``. The small-query path looks up each
subset of Q in a dict of antecedent hashes and ranks the runs found; recommender/compiled.py
has the same path in C. docs/recommender-design.md describes both, benchmarks/recommend.py
measures them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recommender.index import RuleIndex

IntArray = npt.NDArray[np.integer]
U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Below these sizes a Python loop beats the fixed cost of the equivalent numpy calls:
# concatenating the query songs' rule ranges, and keeping the best rule per candidate.
FEW_SONGS = 16
FEW_MATCHES = 64
# The slice of the antecedent dict built per call (one call holds the GIL throughout).
GROUP_DICT_SLICE = 16384


class ScanPath:
    """The answer for any number of query songs, by numpy passes over the rules they list."""

    def __init__(self, index: RuleIndex) -> None:
        self.song_count = index.song_count
        self.rule_count = index.rule_count
        self._popular = index.popular
        self._bounds = index.bounds
        self._width = index.width
        self._columns = index.columns
        self._consequents = index.consequents
        self._keys = index.keys
        self._weights = index.weights

    def answer(self, matched: list[int], limit: int, summed: bool) -> tuple[list[int], int]:
        """The answer's song ids for the distinct known song ids ``matched``, and how many
        came from rules (the rest are popular fill)."""
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
        return self.ranked(rules, in_query, limit, summed)

    def ranked(self, rules: I64, in_query: BoolArray, limit: int, summed: bool) -> I64:
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


class SmallQueryPath:
    """The answer for a few query songs: each subset of Q looked up in a dict of antecedent
    hashes, the runs found ranked in plain Python (whole runs by the scan's code for ``sum``).

    The dict (one entry per antecedent) is the only per-rule-scale Python object; the runs are
    memoryviews of the index's arrays, which give Python ints without a numpy call per access.
    """

    def __init__(self, index: RuleIndex, scan: ScanPath) -> None:
        self.song_count = index.song_count
        self._scan = scan
        self._song_codes: list[int] = index.song_codes.tolist()
        groups: dict[int, int] = {}
        hashes = index.group_hashes.tolist()
        # In slices: one dict(zip(...)) call holds the GIL throughout, and this runs on an
        # actor thread while the event loop serves.
        for start in range(0, len(hashes), GROUP_DICT_SLICE):
            stop = start + GROUP_DICT_SLICE
            groups.update(
                zip(hashes[start:stop], range(start, min(stop, len(hashes))), strict=True)
            )
        self._groups = groups
        self._group_starts = index.group_starts.data
        self._group_rows = index.group_rows.data
        self._row_width = index.row_width
        self._keys_view = index.keys.data
        self._tie_songs: list[int] = index.tie_songs.tolist()
        self._popular_list: list[int] = index.popular.tolist()

    def answer(self, query: list[int], limit: int, summed: bool) -> tuple[list[int], int]:
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
        ranked: list[int] = self._scan.ranked(rules, in_query, limit, summed=True).tolist()
        return ranked
