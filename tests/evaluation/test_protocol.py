"""The held-out protocol: folds, seeds and truths, metrics and baselines against hand counts."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.protocol import Baselines, Scores, make_folds
from mining.transactions import build_transactions
from tests.helpers.playlists import playlist_rows


def test_every_playlist_is_tested_once_and_never_trained_on_in_its_fold() -> None:
    playlists = [[f"p{p}-s{s}" for s in range(4 + p % 3)] for p in range(23)]
    folds = list(make_folds(playlist_rows(playlists), folds=5, seed=7))
    tested = [q.seed[0].split("-")[0] for fold in folds for q in fold.queries]
    assert sorted(tested) == sorted(f"p{p}" for p in range(23))
    for fold in folds:
        trained = {name.split("-")[0] for name in fold.train.song_names}
        assert not trained & {q.seed[0].split("-")[0] for q in fold.queries}
        assert fold.train.playlists + len(fold.queries) == 23


def test_the_seed_is_the_first_half_of_the_distinct_songs_in_file_order() -> None:
    playlists = [["d", "c", "d", "b", "a", "e"], ["x", "y", "z"]] + [["f", "g"]] * 3
    folds = list(make_folds(playlist_rows(playlists), folds=5, seed=0))
    queries = [q for fold in folds for q in fold.queries]
    # The 3-song playlist is too short to test; the repeated "d" counts once.
    assert len(queries) == 1
    assert queries[0].seed == ("d", "c")
    assert queries[0].truth == frozenset({"b", "a", "e"})


def test_random_seed_songs_are_drawn_per_playlist_and_leave_a_truth() -> None:
    playlists = [[f"s{i}" for i in range(10)]] + [["f", "g"]] * 4
    first = [q for f in make_folds(playlist_rows(playlists), 5, 3, seed_songs=4) for q in f.queries]
    again = [q for f in make_folds(playlist_rows(playlists), 5, 3, seed_songs=4) for q in f.queries]
    assert first == again
    assert len(first[0].seed) == 4
    assert set(first[0].seed) | first[0].truth == {f"s{i}" for i in range(10)}
    whole = [
        q for f in make_folds(playlist_rows(playlists), 5, 3, seed_songs=99) for q in f.queries
    ]
    assert len(whole[0].truth) == 1


def test_the_split_depends_on_the_seed_only() -> None:
    playlists = [[f"p{p}-s{s}" for s in range(5)] for p in range(40)]

    def split(seed: int) -> list[set[str]]:
        return [
            {q.seed[0] for q in fold.queries}
            for fold in make_folds(playlist_rows(playlists), 4, seed)
        ]

    assert split(1) == split(1)
    assert split(1) != split(2)


def test_too_few_playlists_for_the_folds_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot make 5 folds of 3 playlists"):
        list(make_folds(playlist_rows([["a"], ["b"], ["c"]]), 5, 0))


def test_metrics_match_hand_computed_values() -> None:
    scores = Scores(k=3)
    truth = frozenset({"b", "d", "x", "y"})
    # Hits at ranks 2 and 3 of the top 3; R = 4 looks at the first four answers.
    scores.add(["a", "b", "d", "y", "z"], truth, fired=True)
    scores.add(["a", "c", "e", "f"], frozenset({"q", "r"}), fired=False)
    mean = scores.mean()
    assert mean["hr"] == 0.5
    assert mean["recall"] == pytest.approx((2 / 4 + 0) / 2)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert mean["ndcg"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / ideal / 2)
    assert mean["r_precision"] == pytest.approx((3 / 4 + 0) / 2)
    assert mean["fired"] == 0.5


def test_popularity_skips_the_seed_and_knows_the_order() -> None:
    train = build_transactions([0, 0, 1, 1, 2], [0, 1, 0, 2, 0], ["a", "b", "c"])
    baselines = Baselines(train)
    assert baselines.popularity(["a"], 2) == ["b", "c"]
    assert baselines.popularity(["unknown"], 5) == ["a", "b", "c"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, 7), min_size=1, max_size=6, unique=True), min_size=2, max_size=12
    ),
    st.lists(st.integers(0, 9), min_size=1, max_size=4),
)
def test_knn_matches_a_brute_force_cosine(playlists: list[list[int]], query: list[int]) -> None:
    pids = [p for p, songs in enumerate(playlists) for _ in songs]
    codes = [s for songs in playlists for s in songs]
    names = [f"s{i}" for i in range(10)]
    train = build_transactions(pids, codes, names)
    answer, found = Baselines(train).knn([names[q] for q in query], 10)

    sets = [set(p) for p in playlists]
    count = {s: sum(s in p for p in sets) for s in range(10)}
    known = [q for q in dict.fromkeys(query) if count[q]]
    score = {
        c: sum(sum(q in p and c in p for p in sets) / math.sqrt(count[q] * count[c]) for q in known)
        for c in range(10)
        if count[c] and c not in known
    }
    popular = sorted((s for s in range(10) if count[s]), key=lambda s: (-count[s], names[s]))
    scored = sorted((c for c in score if score[c] > 0), key=lambda c: (-score[c], popular.index(c)))
    expected = scored + [s for s in popular if s not in scored and s not in known]
    assert found == bool(scored)
    # Equal real scores may differ in the last float bit: compare scores, then the sets.
    assert [round(score.get(int(a[1:]), 0), 9) for a in answer[: len(scored)]] == [
        round(score[c], 9) for c in scored
    ]
    assert set(answer) == {names[s] for s in expected[:10]}
    assert not set(answer) & {names[q] for q in known}
    assert all(a != b for a, b in combinations(answer, 2))
