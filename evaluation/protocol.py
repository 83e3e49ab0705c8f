"""The held-out protocol: folds by playlist, seeds and truths, the metrics and two baselines.

Pure numpy: no mining engine, no server. A test playlist is split into a seed (what a user
has) and a truth (what they added next); a recommender is asked for songs given the seed and
scored on how many of the truth songs it finds in its first ``k`` answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mining.reader import PlaylistRows
from mining.transactions import Transactions, build_transactions

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

# A test playlist needs a seed and a truth of at least two songs each.
MIN_TEST_SONGS = 4
# One fold to test on, at least one to mine.
MIN_FOLDS = 2


@dataclass(frozen=True)
class Query:
    """One test playlist: the songs given (``seed``) and the songs to find (``truth``)."""

    seed: tuple[str, ...]
    truth: frozenset[str]


@dataclass(frozen=True, eq=False)
class Fold:
    """One split: the playlists to mine and the queries made of the held-out ones."""

    number: int
    train: Transactions
    queries: tuple[Query, ...]


def distinct_in_order(songs: Sequence[int]) -> list[int]:
    """The distinct values of ``songs``, each at its first position."""
    return list(dict.fromkeys(songs))


def make_folds(
    rows: PlaylistRows, folds: int, seed: int, seed_songs: int | None = None
) -> Iterator[Fold]:
    """Split the playlists into ``folds`` parts by a seeded shuffle; each part is tested once.

    A held-out playlist with at least MIN_TEST_SONGS distinct songs becomes a query: its seed
    is the first half of its distinct songs in file order (``seed_songs``: that many songs
    drawn at random instead), its truth the rest.
    """
    playlist_count = int(rows.playlist_codes.max()) + 1 if len(rows.playlist_codes) else 0
    if folds < MIN_FOLDS or playlist_count < folds:
        raise ValueError(f"cannot make {folds} folds of {playlist_count} playlists")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(playlist_count, dtype=np.int64)
    fold_of[rng.permutation(playlist_count)] = np.arange(playlist_count) % folds
    row_fold = fold_of[rows.playlist_codes]
    # Each playlist's rows in file order: a stable sort by playlist keeps the order inside one.
    by_playlist = np.argsort(rows.playlist_codes, kind="stable")
    bounds = np.searchsorted(rows.playlist_codes[by_playlist], np.arange(playlist_count + 1))
    songs_in_order = rows.song_codes[by_playlist]
    names = rows.names
    for number in range(folds):
        train_rows = row_fold != number
        train = build_transactions(
            rows.playlist_codes[train_rows], rows.song_codes[train_rows], names
        )
        queries: list[Query] = []
        for playlist in np.flatnonzero(fold_of == number).tolist():
            songs = distinct_in_order(
                songs_in_order[bounds[playlist] : bounds[playlist + 1]].tolist()
            )
            if len(songs) < MIN_TEST_SONGS:
                continue
            if seed_songs is None:
                given = songs[: len(songs) // 2]
            else:
                # One generator per playlist: the draw does not depend on the other queries.
                pick = np.random.default_rng((seed, playlist)).permutation(len(songs))
                given = [songs[i] for i in sorted(pick[: min(seed_songs, len(songs) - 1)])]
            kept = set(given)
            queries.append(
                Query(
                    seed=tuple(names[s] for s in given),
                    truth=frozenset(names[s] for s in songs if s not in kept),
                )
            )
        yield Fold(number, train, tuple(queries))


@dataclass
class Scores:
    """Running sums of the metrics over queries; ``mean()`` gives the table's figures."""

    k: int
    queries: int = 0
    hits: float = 0.0
    recall: float = 0.0
    ndcg: float = 0.0
    r_precision: float = 0.0
    fired: int = 0

    def add(self, answer: Sequence[str], truth: frozenset[str], *, fired: bool) -> None:
        """Score one answer (best first, at least ``max(k, |truth|)`` long where it can be)."""
        top = answer[: self.k]
        found = [song in truth for song in top]
        hit_count = sum(found)
        self.queries += 1
        self.hits += hit_count > 0
        self.recall += hit_count / len(truth)
        dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(found) if hit)
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(self.k, len(truth))))
        self.ndcg += dcg / ideal
        self.r_precision += sum(song in truth for song in answer[: len(truth)]) / len(truth)
        self.fired += fired

    def mean(self) -> dict[str, float]:
        """HR@k, recall@k, NDCG@k, R-precision and the share of queries a rule fired for."""
        n = max(self.queries, 1)
        return {
            "hr": self.hits / n,
            "recall": self.recall / n,
            "ndcg": self.ndcg / n,
            "r_precision": self.r_precision / n,
            "fired": self.fired / n,
        }


class Baselines:
    """Popularity and item co-occurrence kNN over one fold's training playlists.

    kNN scores a candidate ``c`` by ``Σ_q co(q, c) / √(n_q · n_c)`` over the known query songs
    ``q`` (``co``: playlists holding both; ``n``: playlists holding one), best first, ties and
    the fill by popularity. Song ids already number songs by popularity (count desc, name).
    """

    def __init__(self, train: Transactions) -> None:
        self._names = train.song_names
        self._ids = {name: song for song, name in enumerate(train.song_names)}
        self._counts = train.song_counts.astype(np.float64)
        self._indptr, self._indices = train.indptr, train.indices
        # Song → the playlists holding it (CSC of the incidence matrix).
        rows = np.repeat(np.arange(train.playlists), np.diff(train.indptr))
        order = np.argsort(train.indices, kind="stable")
        self._playlists_of = rows[order]
        self._song_bounds = np.searchsorted(
            train.indices[order], np.arange(len(train.song_names) + 1)
        )

    def _known(self, seed: Sequence[str]) -> list[int]:
        return distinct_in_order([self._ids[s] for s in seed if s in self._ids])

    def _ranked(self, scores: F64, query: list[int], limit: int) -> list[str]:
        scores = scores.copy()
        scores[query] = 0.0
        scored = np.flatnonzero(scores > 0)
        # Stable sort of ids (popularity order) by score desc: ties go to the more popular.
        ranked = scored[np.argsort(-scores[scored], kind="stable")][:limit].tolist()
        if len(ranked) < limit:
            taken = set(ranked) | set(query)
            for song in range(len(self._names)):
                if song not in taken:
                    ranked.append(song)
                    if len(ranked) == limit:
                        break
        return [self._names[s] for s in ranked]

    def popularity(self, seed: Sequence[str], limit: int) -> list[str]:
        """The most popular songs not in the seed."""
        return self._ranked(np.zeros(len(self._names)), self._known(seed), limit)

    def knn(self, seed: Sequence[str], limit: int) -> tuple[list[str], bool]:
        """Item co-occurrence kNN (cosine); also whether any co-occurrence was found."""
        query = self._known(seed)
        scores = np.zeros(len(self._names))
        for q in query:
            playlists = self._playlists_of[self._song_bounds[q] : self._song_bounds[q + 1]]
            if not len(playlists):
                continue
            songs = np.concatenate(
                [self._indices[self._indptr[p] : self._indptr[p + 1]] for p in playlists.tolist()]
            )
            co = np.bincount(songs, minlength=len(self._names)).astype(np.float64)
            scores += co / np.sqrt(self._counts[q] * self._counts)
        scores[query] = 0.0
        return self._ranked(scores, query, limit), bool(np.any(scores > 0))
