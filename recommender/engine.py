"""The recommendation engine: rules ``A → c`` in, ranked song names out (pure: numpy only).

Semantics: the query Q is deduplicated, each name matched exactly, else by its normalised form
(recommender/names.py), unknown names ignored (and reported by :meth:`Recommender.explain`).
Candidates are ``{c : A → c, A ⊆ Q, c ∉ Q}``, ranked by one of :data:`RANKINGS`:

- ``best`` (the original contract): the best confidence of a rule giving ``c`` (desc), then the
  best lift (desc), then the name (asc);
- ``sum``: the sum of the confidences of all the distinct rules giving ``c``, each in fixed
  point, so sums are exact integers, identical on every path; equal sums fall back to the
  ``best`` order (docs/ranking.md).

If there are fewer than ``limit`` candidates, the most popular songs not in Q and not listed
yet (playlist count desc, then name) fill the rest.

This module puts the parts together: recommender/index.py builds the index, recommender/query.py
and recommender/compiled.py answer (a few known songs: the small-query path, compiled when it
was built; more: the scan), recommender/names.py matches and searches names.
docs/recommender-design.md has the design and the proof that the ranking is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from mining.limits import DEFAULT_LIMIT
from mining.rulesfile import RuleSet
from recommender import compiled as compiled_path
from recommender.index import build_index
from recommender.names import NameIndex
from recommender.query import ScanPath, SmallQueryPath

# Queries of at most this many known songs enumerate their subsets (2^k - 1 hash lookups)
# instead of scanning every rule listed under their songs: benchmarks/recommend.py prints both.
FEW_QUERY_SONGS = 8
# How candidates are ranked (see the module docstring); the server's RANKING picks one.
RANKINGS = ("best", "sum")
# The server's default: on real playlists the sum beats the best rule (docs/ranking.md).
DEFAULT_RANKING = "sum"
# Whether each ranking sums (what the query paths take).
_SUMMED = {ranking: ranking == "sum" for ranking in RANKINGS}


class Recommendation(NamedTuple):
    """An answer and where it comes from."""

    songs: list[str]
    # How many of ``songs``, from the start, came from rules; the rest are popular fill.
    from_rules: int
    # The query songs the model does not know: deduplicated, in request order, at most
    # mining.limits.UNKNOWN_LIST_LIMIT.
    unknown: list[str]


class QueryPath(Protocol):
    """A query path: the answer's song ids for distinct known song ids, and how many came from
    rules (the rest are popular fill)."""

    def answer(self, query: list[int], limit: int, summed: bool, /) -> tuple[list[int], int]:
        """Answer ``query`` with at most ``limit`` songs; ``summed``: the sum ranking."""
        ...


@dataclass(frozen=True, eq=False)
class Recommender:
    """An immutable index over one rule set: recommendations and name search (thread-safe)."""

    song_names: tuple[str, ...]
    song_count: int
    rule_count: int
    # The ranking of recommend and explain (one of RANKINGS); explain_json may name another.
    ranking: str
    # Bytes held by the index's arrays and the compiled path's table (see index_bytes).
    _index_bytes: int
    _names: NameIndex
    _scan: ScanPath
    # The small-query path: compiled (SmallQueryIndex) or SmallQueryPath.
    _small: QueryPath
    # _small when it is the compiled path (which also answers names straight to JSON), else None.
    _compiled: compiled_path.SmallQueryIndex | None

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
        built = compiled_path.SmallQueryIndex is not None
        if compiled and not built:
            raise ImportError("recommender._smallquery was not built (no C compiler at install)")
        use_compiled = built if compiled is None else compiled
        index = build_index(ruleset)
        names = NameIndex.build(ruleset.song_names, index.popular)
        scan = ScanPath(index)
        small: QueryPath
        small_index = None
        table_bytes = 0
        if use_compiled:
            small_index = compiled_path.compiled_small_query(index, names)
            table_bytes = small_index.table_bytes
            small = small_index
        else:
            small = SmallQueryPath(index, scan)
        return cls(
            song_names=ruleset.song_names,
            song_count=index.song_count,
            rule_count=index.rule_count,
            ranking=ranking,
            _index_bytes=index.array_bytes + table_bytes,
            _names=names,
            _scan=scan,
            _small=small,
            _compiled=small_index,
        )

    @property
    def index_bytes(self) -> int:
        """Bytes held by the index's numpy arrays (the name tables are per song, not per rule)."""
        return self._index_bytes

    @property
    def compiled(self) -> bool:
        """True when small queries are answered by the compiled path."""
        return self._compiled is not None

    def match(self, songs: Sequence[str]) -> list[int]:
        """The distinct song ids a query names (exact name, else normalised form; unknown: none)."""
        return self._names.resolve(songs)[0]

    def recommend(self, songs: Sequence[str], limit: int = DEFAULT_LIMIT) -> list[str]:
        """Up to ``limit`` song names for a query, rule-based first, then the most popular."""
        return self.explain(songs, limit).songs

    def explain(
        self, songs: Sequence[str], limit: int = DEFAULT_LIMIT, *, ranking: str | None = None
    ) -> Recommendation:
        """``recommend``'s answer, how many of its songs came from rules, and the query songs
        the model does not know; ``ranking`` (one of RANKINGS) overrides the index's own."""
        ids, from_rules, unknown = self._answer(songs, limit, ranking)
        names = self.song_names
        return Recommendation([names[song] for song in ids], from_rules, unknown)

    def recommend_json(self, songs: Sequence[str], limit: int = DEFAULT_LIMIT) -> bytes:
        """``recommend``'s answer as a JSON array, exactly as ``json.dumps`` writes it."""
        return self.explain_json(songs, limit)[0]

    def explain_json(
        self, songs: Sequence[str], limit: int = DEFAULT_LIMIT, *, ranking: str | None = None
    ) -> tuple[bytes, int, list[str]]:
        """``explain``'s answer with its songs as a JSON array, exactly as ``json.dumps`` writes
        it, then ``from_rules`` and ``unknown``.

        Built from each name encoded once per rule set: a third of the cost of encoding the
        list per request. A few songs all named exactly (the usual request) take one call of the
        compiled path, when it was built.
        """
        compiled = self._compiled
        if compiled is not None and len(songs) <= FEW_QUERY_SONGS:
            summed = _SUMMED.get(self.ranking if ranking is None else ranking)
            if summed is not None:
                answered = compiled.answer_json(songs, limit, summed)
                if answered is not None:
                    return answered[0], answered[1], []
        ids, from_rules, unknown = self._answer(songs, limit, ranking)
        songs_json = b"[" + b", ".join(map(self._names.json_names.__getitem__, ids)) + b"]"
        return songs_json, from_rules, unknown

    def search(self, query: str, limit: int = DEFAULT_LIMIT) -> list[str]:
        """Autocomplete: names starting with the query, then containing it; most popular first."""
        return self._names.search(query, limit)

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
        matched, unknown = self._names.resolve(songs)
        if len(matched) > FEW_QUERY_SONGS:
            ids, from_rules = self._scan.answer(matched, limit, summed)
        else:
            ids, from_rules = self._small.answer(matched, limit, summed)
        return ids, from_rules, unknown
