"""The recommendation engine: every rule of the contract's semantics, and a brute-force oracle."""

from __future__ import annotations

import dataclasses
import json
import math
import unicodedata
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mining.limits import UNKNOWN_LIST_LIMIT
from mining.rulesfile import MiningParameters, RuleSet, RulesHeader, pack_rules
from recommender import compiled as compiled_path
from recommender import engine as recommender
from recommender import index as index_module
from recommender.engine import Recommendation, Recommender
from recommender.keys import WEIGHT_BITS
from recommender.names import normalise_name

Rule = tuple[Sequence[int], int, int, int]


def make_ruleset(
    songs: Sequence[tuple[str, int]], rules: Sequence[Rule], transactions: int = 100
) -> RuleSet:
    """A validated-shape rule set from ``(name, playlist count)`` songs and packed rules."""
    offsets, ante, cons, counts, ante_counts = pack_rules(rules)
    header = RulesHeader(
        package_version="0.0.0",
        dataset_url="file:///test.csv",
        generated_ns=1,
        parameters=MiningParameters(min_support=0.01, min_confidence=0.0, max_len=8),
        engine="test",
        transactions=transactions,
        song_count=len(songs),
        rule_count=len(rules),
    )
    return RuleSet(
        header=header,
        song_names=tuple(name for name, _ in songs),
        song_counts=np.array([count for _, count in songs], dtype=np.uint32),
        antecedent_offsets=offsets,
        antecedent_songs=ante,
        consequents=cons,
        rule_counts=counts,
        antecedent_counts=ante_counts,
    )


def brute_force_match(ruleset: RuleSet, query: Sequence[str]) -> tuple[set[str], list[str]]:
    """The songs a query names, and its names that name none (distinct, in order, at most 20)."""
    names = list(ruleset.song_names)
    counts = [int(c) for c in ruleset.song_counts]
    chosen: set[str] = set()
    unknown: list[str] = []
    for name in query:
        if name in names:
            chosen.add(name)
            continue
        same_form = [s for s in names if normalise_name(s) == normalise_name(name)]
        if same_form:
            chosen.add(min(same_form, key=lambda s: (-counts[names.index(s)], s)))
        elif name not in unknown and len(unknown) < 20:
            unknown.append(name)
    return chosen, unknown


def brute_force(ruleset: RuleSet, query: Sequence[str], limit: int) -> list[str]:
    """The contract's semantics, written plainly: exact fractions, sets, sorted()."""
    names = list(ruleset.song_names)
    counts = [int(c) for c in ruleset.song_counts]
    n = ruleset.header.transactions
    chosen, _ = brute_force_match(ruleset, query)
    best: dict[str, tuple[Fraction, Fraction]] = {}
    for antecedent, consequent, rule_count, antecedent_count in ruleset.iter_rules():
        if set(antecedent) <= chosen and consequent not in chosen:
            confidence = Fraction(rule_count, antecedent_count)
            lift = confidence / Fraction(counts[names.index(consequent)], n)
            best[consequent] = max(best.get(consequent, (confidence, lift)), (confidence, lift))
    ranked = sorted(best, key=lambda c: (-best[c][0], -best[c][1], c))
    popular = sorted(names, key=lambda s: (-counts[names.index(s)], s))
    fill = [s for s in popular if s not in chosen and s not in best]
    return (ranked + fill)[:limit]


def brute_force_search(ruleset: RuleSet, query: str, limit: int) -> list[str]:
    """Autocomplete written plainly: prefix matches, then other substring matches."""
    counts = dict(zip(ruleset.song_names, (int(c) for c in ruleset.song_counts), strict=True))
    by_popularity = sorted(ruleset.song_names, key=lambda s: (-counts[s], s))
    needle = normalise_name(query)
    prefix = [s for s in by_popularity if normalise_name(s).startswith(needle)]
    inner = [s for s in by_popularity if needle in normalise_name(s) and s not in prefix]
    return (prefix + inner)[:limit]


# Playlist counts are all different unless a test is about ties.
SONGS = [
    ("Alpha", 90),
    ("Beta", 80),
    ("Gamma", 70),
    ("Delta", 60),
    ("Épsilon", 50),
    ("Hey Jude", 45),
    ("hey jude", 5),
    ("Zeta", 40),
    ("Eta", 30),
    ("Theta", 20),
]
ID = {name: i for i, (name, _) in enumerate(SONGS)}


def rule(antecedent: Sequence[str], consequent: str, count: int, antecedent_count: int) -> Rule:
    return ([ID[a] for a in antecedent], ID[consequent], count, antecedent_count)


def engine(rules: Sequence[Rule], songs: Sequence[tuple[str, int]] = SONGS) -> Recommender:
    return Recommender.from_ruleset(make_ruleset(songs, rules))


def test_counts_are_exposed() -> None:
    r = engine([rule(["Alpha"], "Beta", 8, 10), rule(["Beta"], "Alpha", 8, 9)])
    assert (r.song_count, r.rule_count) == (len(SONGS), 2)


def test_a_rule_fires_when_its_antecedent_is_in_the_query() -> None:
    r = engine([rule(["Theta"], "Eta", 8, 10)])
    assert r.recommend(["Theta"], limit=1) == ["Eta"]


def test_exact_name_wins_over_the_normalised_form() -> None:
    r = engine([rule(["Hey Jude"], "Eta", 8, 10), rule(["hey jude"], "Theta", 8, 10)])
    assert r.recommend(["hey jude"], limit=1) == ["Theta"]
    assert r.recommend(["Hey Jude"], limit=1) == ["Eta"]


def test_normalised_form_picks_the_most_popular_song_sharing_it() -> None:
    r = engine([rule(["Hey Jude"], "Eta", 8, 10), rule(["hey jude"], "Theta", 8, 10)])
    assert r.recommend(["  HEY\t jude \n"], limit=1) == ["Eta"]


def test_normalised_matching_composes_and_casefolds() -> None:
    r = engine([rule(["Épsilon"], "Theta", 8, 10)])
    decomposed = unicodedata.normalize("NFD", "ÉPSILON")
    assert decomposed != "ÉPSILON"
    assert r.recommend([decomposed], limit=1) == ["Theta"]


def test_normalise_name_documented_behaviour() -> None:
    assert normalise_name("  Hey \u00a0 JUDE\t") == "hey jude"
    assert normalise_name("\u01f0") == normalise_name("J\u030c") == "\u01f0"
    assert normalise_name(" \n ") == ""


def test_unknown_songs_are_ignored() -> None:
    r = engine([rule(["Theta"], "Eta", 8, 10)])
    assert r.recommend(["nope", "Theta", "also unknown"]) == r.recommend(["Theta"])
    assert r.recommend(["nope"], limit=3) == ["Alpha", "Beta", "Gamma"]


def test_duplicates_in_the_query_count_once() -> None:
    # A two-song antecedent must not be satisfied by one song named twice.
    r = engine([rule(["Theta", "Eta"], "Zeta", 8, 10)])
    assert r.recommend(["Theta", "Theta", "theta"], limit=1) == ["Alpha"]
    assert r.recommend(["Theta", "theta", "Eta"], limit=1) == ["Zeta"]


def test_every_antecedent_song_must_be_in_the_query() -> None:
    r = engine([rule(["Theta", "Eta", "Delta"], "Zeta", 9, 10)])
    assert "Zeta" not in r.recommend(["Theta", "Eta"], limit=3)
    assert r.recommend(["Theta", "Eta", "Delta"], limit=1) == ["Zeta"]
    assert r.recommend(["Delta", "Alpha", "Eta", "Theta"], limit=1) == ["Zeta"]


def test_songs_in_the_query_are_never_recommended() -> None:
    r = engine([rule(["Theta"], "Eta", 9, 10), rule(["Eta"], "Theta", 9, 10)])
    by_popularity = [name for name, _ in sorted(SONGS, key=lambda s: -s[1])]
    assert r.recommend(["Theta", "Eta"], limit=len(SONGS)) == [
        name for name in by_popularity if name not in ("Theta", "Eta")
    ]


def test_ranked_by_confidence_first() -> None:
    r = engine(
        [
            rule(["Theta"], "Alpha", 7, 10),
            rule(["Theta"], "Zeta", 9, 10),
            rule(["Theta"], "Eta", 8, 10),
        ]
    )
    assert r.recommend(["Theta"], limit=3) == ["Zeta", "Eta", "Alpha"]


def test_the_best_rule_of_a_candidate_counts() -> None:
    r = engine(
        [
            rule(["Theta"], "Alpha", 7, 10),
            rule(["Theta", "Eta"], "Alpha", 10, 10),
            rule(["Theta"], "Zeta", 9, 10),
        ]
    )
    assert r.recommend(["Theta"], limit=2) == ["Zeta", "Alpha"]
    assert r.recommend(["Theta", "Eta"], limit=2) == ["Alpha", "Zeta"]


def test_equal_confidence_is_compared_exactly_then_by_lift() -> None:
    # 77/110 == 7/10 (a float computation from supports gives 0.6999999999999998 for one);
    # then the higher lift wins: same confidence over a less popular song (Eta).
    r = engine([rule(["Theta"], "Alpha", 7, 10), rule(["Theta"], "Eta", 77, 110)])
    assert r.recommend(["Theta"], limit=2) == ["Eta", "Alpha"]


def test_equal_confidence_and_lift_then_name() -> None:
    songs = [("b", 10), ("a", 10), ("c", 10), ("q", 50)]
    rules = [([3], 0, 6, 10), ([3], 1, 3, 5), ([3], 2, 60, 100)]
    assert engine(rules, songs).recommend(["q"], limit=3) == ["a", "b", "c"]


def test_confidence_is_exact_where_float64_cannot_tell_fractions_apart() -> None:
    # With n = 2^32 - 1 playlists, 2^31/(2^31 + 1) > (n - 2)/n although both round to one
    # float64 and the larger has the smaller numerator: "z" must still come first although "a"
    # has the larger lift and the smaller name.
    n, m = 2**32 - 1, 2**31 + 1
    assert (m - 1) / m == (n - 2) / n
    # 7/10 and 14/20 share a float too, rightly: they are one confidence (then names decide).
    songs = [("a", n - 1), ("z", n), ("q", n), ("c", 5), ("b", 5)]
    rules = [([2], 0, n - 2, n), ([2], 1, m - 1, m), ([2], 3, 7, 10), ([2], 4, 14, 20)]
    r = Recommender.from_ruleset(make_ruleset(songs, rules, transactions=n))
    assert r.recommend(["q"], limit=4) == ["z", "a", "b", "c"]


def test_popular_songs_fill_after_the_rule_based_ones() -> None:
    r = engine([rule(["Theta"], "Eta", 8, 10), rule(["Theta"], "Beta", 7, 10)])
    assert r.recommend(["Theta", "Alpha"], limit=5) == ["Eta", "Beta", "Gamma", "Delta", "Épsilon"]


def test_popular_fill_breaks_count_ties_by_name() -> None:
    songs = [("b", 10), ("c", 10), ("a", 10), ("top", 11)]
    assert engine([], songs).recommend([], limit=4) == ["top", "a", "b", "c"]


def test_limit_cuts_the_list_and_must_be_positive() -> None:
    r = engine([rule(["Theta"], "Eta", 8, 10), rule(["Theta"], "Beta", 9, 10)])
    assert r.recommend(["Theta"], limit=1) == ["Beta"]
    assert len(r.recommend(["Theta"], limit=100)) == len(SONGS) - 1
    with pytest.raises(ValueError, match="limit"):
        r.recommend(["Theta"], limit=0)


def test_no_rules_at_all_gives_the_most_popular() -> None:
    r = engine([])
    assert r.rule_count == 0
    assert r.recommend(["Alpha", "x"], limit=2) == ["Beta", "Gamma"]


def test_empty_song_table() -> None:
    r = engine([], songs=[])
    assert r.recommend(["anything"], limit=5) == []
    assert r.search("", limit=5) == []


def test_search_prefix_matches_come_before_substring_matches() -> None:
    songs = [("Beta Eta", 90), ("Etage", 10), ("Zeta", 80), ("Eta", 30), ("Alpha", 95)]
    r = engine([], songs)
    assert r.search("eta", limit=10) == ["Eta", "Etage", "Beta Eta", "Zeta"]
    assert r.search("ETA", limit=3) == ["Eta", "Etage", "Beta Eta"]
    assert r.search("eta", limit=1) == ["Eta"]


def test_search_keeps_the_most_popular_of_many_prefix_matches() -> None:
    songs = [("ta", 1), ("tb", 5), ("tc", 3), ("td", 9), ("xt", 10)]
    assert engine([], songs).search("t", limit=2) == ["td", "tb"]
    assert engine([], songs).search("t", limit=5) == ["td", "tb", "tc", "ta", "xt"]


def test_search_normalises_the_query_and_lists_every_song_sharing_a_form() -> None:
    r = engine([])
    assert r.search("  HEY   j", limit=5) == ["Hey Jude", "hey jude"]
    assert r.search(unicodedata.normalize("NFD", "éps"), limit=5) == ["Épsilon"]


def test_search_empty_query_gives_the_most_popular_and_no_match_gives_nothing() -> None:
    r = engine([])
    assert r.search("   ", limit=2) == ["Alpha", "Beta"]
    assert r.search("no such song", limit=5) == []
    with pytest.raises(ValueError, match="limit"):
        r.search("a", limit=0)


def test_search_does_not_match_across_names() -> None:
    # The search text joins names with newlines; a query must not straddle two of them.
    r = engine([], [("ab", 2), ("cd", 1)])
    assert r.search("bc", limit=5) == []
    assert r.search("b", limit=5) == ["ab"]


@pytest.mark.slow
def test_a_large_random_rule_set_agrees_with_the_brute_force() -> None:
    # Long antecedents (up to 7 songs), big per-song lists and long queries: the regime of the
    # real rule sets, where the vectorised paths (second-song filter, padded rows) all run.
    rng = np.random.default_rng(7)
    n_songs, transactions = 300, 1000
    counts = rng.integers(1, transactions, n_songs)
    songs = [(f"song {i:03}", int(counts[i])) for i in range(n_songs)]
    weights = np.sort(rng.zipf(1.6, n_songs).astype(float))[::-1]
    weights /= weights.sum()
    rules: dict[tuple[tuple[int, ...], int], Rule] = {}
    while len(rules) < 4000:
        size = int(rng.integers(1, 8))
        members = rng.choice(n_songs, size + 1, replace=False, p=weights)
        antecedent, consequent = tuple(sorted(members[:-1].tolist())), int(members[-1])
        antecedent_count = int(rng.integers(1, 60))
        count = int(rng.integers(1, antecedent_count + 1))
        rules[antecedent, consequent] = (antecedent, consequent, count, antecedent_count)
    ruleset = make_ruleset(songs, list(rules.values()), transactions)
    rs = every_build(ruleset)
    for size in (1, 2, 3, 5, 7, 8, 9, 20, 60, 150):
        for _ in range(6):
            query = [songs[i][0] for i in rng.choice(n_songs, size, replace=False, p=weights)]
            assert answers_by_switch(rs, query, 25) == [brute_force(ruleset, query, 25)] * PATHS


# Case pairs, whitespace, a composed and a decomposed "é", and the last code point (the prefix
# search's upper bound must handle it).
NAME_ALPHABET = 'aAbB \té"\\' + "e\u0301" + chr(0x10FFFF)


@st.composite
def rulesets(draw: st.DrawFn) -> RuleSet:
    names = draw(st.lists(st.text(NAME_ALPHABET, max_size=4), min_size=1, max_size=8, unique=True))
    transactions = draw(st.integers(1, 12))
    counts = draw(st.lists(st.integers(1, transactions), min_size=len(names), max_size=len(names)))
    song_ids = st.integers(0, len(names) - 1)
    raw = draw(
        st.lists(
            st.tuples(
                st.frozensets(song_ids, min_size=1, max_size=4),
                song_ids,
                st.integers(1, transactions),
                st.integers(1, transactions),
            ),
            max_size=25,
            unique_by=lambda r: (r[0], r[1]),
        )
    )
    rules = [(sorted(a), c, min(n, na), max(n, na)) for a, c, n, na in raw if c not in a]
    return make_ruleset(list(zip(names, counts, strict=True)), rules, transactions)


@st.composite
def queries(draw: st.DrawFn, ruleset: RuleSet) -> list[str]:
    known = st.sampled_from(ruleset.song_names)
    variant = known.map(lambda s: unicodedata.normalize("NFD", f" {s.upper()}  "))
    return draw(st.lists(st.one_of(known, variant, st.text(NAME_ALPHABET, max_size=3))))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), ruleset=rulesets(), limit=st.integers(1, 12))
@pytest.mark.slow
def test_recommend_equals_the_brute_force(
    data: st.DataObject, ruleset: RuleSet, limit: int
) -> None:
    query = data.draw(queries(ruleset))
    got = Recommender.from_ruleset(ruleset).recommend(query, limit)
    assert got == brute_force(ruleset, query, limit)


@settings(max_examples=300, deadline=None)
@given(ruleset=rulesets(), query=st.text(NAME_ALPHABET, max_size=3), limit=st.integers(1, 12))
def test_search_equals_the_brute_force(ruleset: RuleSet, query: str, limit: int) -> None:
    got = Recommender.from_ruleset(ruleset).search(query, limit)
    assert got == brute_force_search(ruleset, query, limit)


# Both query paths: subsets looked up for at most FEW_QUERY_SONGS known songs, the vectorised
# scan above that. The tests below also move the switch so that the scan answers every query,
# and the subsets answer every query up to 12 songs (2^12 lookups), and their queries reach
# sizes at and around the default switch.
SWITCHES = (0, recommender.FEW_QUERY_SONGS, 12)


# The small-query path in Python, and compiled when it was built (see test_smallquery.py),
# with the sum ranking's tallies in an array over song ids (the default; stopping early as soon
# as it can, completing the contenders' sums by testing each rule or from a bitmap of every run,
# and reading every rule), and in the hash table it takes past DENSE_TALLY_SONGS songs:
# (compiled, dense tally limit, early-stop depth, bitmap share).
EVERY_RUN = 1 << 40
BUILDS = (
    (
        (False, 0, 0, 0),
        (True, compiled_path.DENSE_TALLY_SONGS, 1, 0),
        (True, compiled_path.DENSE_TALLY_SONGS, 1, EVERY_RUN),
        (True, compiled_path.DENSE_TALLY_SONGS, 0, 0),
        (True, 0, 0, 0),
    )
    if compiled_path.SmallQueryIndex is not None
    else ((False, 0, 0, 0),)
)
PATHS = len(SWITCHES) * len(BUILDS)


def every_build(ruleset: RuleSet) -> list[Recommender]:
    """One recommender per small-query path: Python, and compiled when it was built (each
    tally)."""
    built = []
    for compiled, dense, depth, share in BUILDS:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(compiled_path, "DENSE_TALLY_SONGS", dense)
            patch.setattr(compiled_path, "SUM_DEPTH", depth)
            patch.setattr(compiled_path, "BITMAP_SHARE", share)
            built.append(Recommender.from_ruleset(ruleset, compiled=compiled))
    return built


def answers_by_switch(
    recommenders: Sequence[Recommender], query: Sequence[str], limit: int
) -> list[list[str]]:
    """``recommend(query, limit)`` with every query path of every build in turn."""
    answers = []
    for r in recommenders:
        for switch in SWITCHES:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(recommender, "FEW_QUERY_SONGS", switch)
                answers.append(r.recommend(query, limit))
    return answers


@st.composite
def wider_rulesets(draw: st.DrawFn, messy: bool = False) -> RuleSet:
    """Up to 14 songs, so that queries reach past the switch; ``messy``: repeated rules and
    songs repeated inside an antecedent, which a rules file does not forbid."""
    n_songs = draw(st.integers(1, 14))
    names = [f"s{i}" for i in range(n_songs)]
    transactions = draw(st.integers(1, 30))
    counts = draw(st.lists(st.integers(1, transactions), min_size=n_songs, max_size=n_songs))
    song_ids = st.integers(0, n_songs - 1)
    antecedents = (
        st.lists(song_ids, min_size=1, max_size=6)
        if messy
        else st.frozensets(song_ids, min_size=1, max_size=6)
    )
    raw = draw(
        st.lists(
            st.tuples(
                antecedents, song_ids, st.integers(1, transactions), st.integers(1, transactions)
            ),
            max_size=60,
        )
    )
    rules = [(sorted(a), c, min(n, na), max(n, na)) for a, c, n, na in raw if c not in a]
    if not messy:
        rules = list({(tuple(a), c): (a, c, n, na) for a, c, n, na in rules}.values())
    return make_ruleset(list(zip(names, counts, strict=True)), rules, transactions)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ruleset=wider_rulesets(), limit=st.integers(1, 16))
@pytest.mark.slow
def test_both_query_paths_equal_the_brute_force(
    data: st.DataObject, ruleset: RuleSet, limit: int
) -> None:
    size = data.draw(st.integers(0, len(ruleset.song_names)))
    query = data.draw(st.permutations(ruleset.song_names)).__getitem__(slice(size))
    expected = brute_force(ruleset, query, limit)
    assert answers_by_switch(every_build(ruleset), query, limit) == [expected] * PATHS


@settings(max_examples=200, deadline=None)
@given(data=st.data(), ruleset=wider_rulesets(messy=True), limit=st.integers(1, 16))
def test_repeated_rules_and_songs_in_a_rules_file_count_once(
    data: st.DataObject, ruleset: RuleSet, limit: int
) -> None:
    query = data.draw(st.lists(st.sampled_from(ruleset.song_names), max_size=12))
    expected = brute_force(ruleset, query, limit)
    assert answers_by_switch(every_build(ruleset), query, limit) == [expected] * PATHS


def test_a_repeated_rule_does_not_crowd_out_other_candidates() -> None:
    # {Theta} → Eta three times: its run must not fill the first `limit + |Q|` places of the
    # small path's merge with one candidate.
    rules = [rule(["Theta"], "Eta", 9, 10)] * 3 + [rule(["Theta"], "Zeta", 8, 10)]
    rs = every_build(make_ruleset(SONGS, rules))
    assert answers_by_switch(rs, ["Theta"], 2) == [["Eta", "Zeta"]] * PATHS


def test_colliding_antecedent_hashes_are_redrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    # First draw: every song has one code, so {a, b, c} and {a} (and {b}, ...) collide.
    drawn = []

    def codes(n_songs: int, attempt: int) -> np.ndarray:
        drawn.append(attempt)
        if attempt == 0:
            same = np.full(n_songs + 1, 12345, dtype=np.uint64)
            same[n_songs] = 0
            return same
        return real_codes(n_songs, attempt)

    real_codes = index_module.song_codes
    monkeypatch.setattr(index_module, "song_codes", codes)
    rules = [
        rule(["Theta", "Eta", "Zeta"], "Alpha", 9, 10),
        rule(["Theta"], "Beta", 8, 10),
        rule(["Eta"], "Gamma", 7, 10),
    ]
    ruleset = make_ruleset(SONGS, [*rules])
    rs = every_build(ruleset)
    assert drawn == [0, 1] * len(BUILDS)
    for query in (["Theta"], ["Eta"], ["Theta", "Eta", "Zeta"], ["Zeta"]):
        assert answers_by_switch(rs, query, 4) == [brute_force(ruleset, query, 4)] * PATHS


def test_hash_collisions_that_never_clear_fail_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    same = np.full(len(SONGS) + 1, 7, dtype=np.uint64)
    same[len(SONGS)] = 0
    monkeypatch.setattr(index_module, "song_codes", lambda n_songs, attempt: same.copy())
    rules = [rule(["Theta"], "Beta", 8, 10), rule(["Eta"], "Gamma", 7, 10)]
    with pytest.raises(RuntimeError, match="collision"):
        engine(rules)


def test_a_subset_hashing_like_an_antecedent_is_not_taken_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Codes with Theta ^ Eta == Zeta: the query {Theta, Eta} hashes like the antecedent {Zeta}
    # (distinct antecedents still hash apart, so the build accepts them).
    codes = np.arange(1, len(SONGS) + 2, dtype=np.uint64) << np.uint64(8)
    codes[ID["Zeta"]] = codes[ID["Theta"]] ^ codes[ID["Eta"]]
    codes[len(SONGS)] = 0
    monkeypatch.setattr(index_module, "song_codes", lambda n_songs, attempt: codes.copy())
    # Theta and Eta must be in some antecedent, or the lookup leaves them out of the subsets.
    rules = [rule(["Zeta"], "Delta", 9, 10), rule(["Theta", "Eta", "Alpha"], "Beta", 9, 10)]
    rs = every_build(make_ruleset(SONGS, rules))
    assert answers_by_switch(rs, ["Theta", "Eta"], 1) == [["Alpha"]] * PATHS
    assert answers_by_switch(rs, ["Zeta"], 1) == [["Delta"]] * PATHS


@settings(max_examples=200, deadline=None)
@given(data=st.data(), ruleset=rulesets(), limit=st.integers(1, 12))
@pytest.mark.slow
def test_the_json_answer_is_what_json_dumps_writes(
    data: st.DataObject, ruleset: RuleSet, limit: int
) -> None:
    # Names with escapes, non-ASCII and the last code point, on both query paths.
    query = data.draw(queries(ruleset))
    for r in every_build(ruleset):
        for switch in SWITCHES:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(recommender, "FEW_QUERY_SONGS", switch)
                answer = r.recommend_json(query, limit)
                assert answer == json.dumps(r.recommend(query, limit)).encode()


# --- The sum ranking, and where answers come from -------------------------------------------


def fixed_point(confidence: Fraction) -> int:
    """A confidence as the sum ranking weighs it: round(c · 2^31), halves up."""
    return math.floor(confidence * (1 << WEIGHT_BITS) + Fraction(1, 2))


def firing_rules(ruleset: RuleSet, chosen: set[str]) -> dict[tuple[frozenset[str], str], Fraction]:
    """Each distinct rule ``A → c`` with ``A ⊆ Q``, ``c ∉ Q``, and its best confidence (a rule
    repeated in the file counts once)."""
    firing: dict[tuple[frozenset[str], str], Fraction] = {}
    for antecedent, consequent, rule_count, antecedent_count in ruleset.iter_rules():
        if set(antecedent) <= chosen and consequent not in chosen:
            key = (frozenset(antecedent), consequent)
            firing[key] = max(firing.get(key, Fraction(0)), Fraction(rule_count, antecedent_count))
    return firing


def brute_force_explain(
    ruleset: RuleSet, query: Sequence[str], limit: int, ranking: str
) -> Recommendation:
    """``explain`` written plainly: sums of fixed-point confidences as Python ints, ties by
    (best confidence, best lift, name) as Fractions, sorted(); then the popular fill."""
    names = list(ruleset.song_names)
    counts = {name: int(c) for name, c in zip(names, ruleset.song_counts, strict=True)}
    n = ruleset.header.transactions
    chosen, unknown = brute_force_match(ruleset, query)
    sums: dict[str, int] = {}
    best: dict[str, tuple[Fraction, Fraction]] = {}
    for (_, consequent), confidence in firing_rules(ruleset, chosen).items():
        sums[consequent] = sums.get(consequent, 0) + fixed_point(confidence)
        lift = confidence / Fraction(counts[consequent], n)
        best[consequent] = max(best.get(consequent, (confidence, lift)), (confidence, lift))
    summed = ranking == "sum"
    ranked = sorted(best, key=lambda c: (-sums[c] if summed else 0, -best[c][0], -best[c][1], c))
    popular = sorted(names, key=lambda s: (-counts[s], s))
    fill = [s for s in popular if s not in chosen and s not in best]
    return Recommendation((ranked + fill)[:limit], min(len(ranked), limit), unknown)


def explained_by_switch(
    recommenders: Sequence[Recommender], query: Sequence[str], limit: int, ranking: str
) -> list[Recommendation]:
    """``explain(query, limit)`` under ``ranking`` with every query path of every build, from
    an index built for that ranking and through ``explain_json`` of one built for the other."""
    answers = []
    for r in recommenders:
        own = dataclasses.replace(r, ranking=ranking)
        for switch in SWITCHES:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(recommender, "FEW_QUERY_SONGS", switch)
                answers.append(own.explain(query, limit))
                songs_json, from_rules, unknown = r.explain_json(query, limit, ranking=ranking)
                answers.append(Recommendation(json.loads(songs_json), from_rules, unknown))
    return answers


def summed(rules: Sequence[Rule], songs: Sequence[tuple[str, int]] = SONGS) -> Recommender:
    return Recommender.from_ruleset(make_ruleset(songs, rules), ranking="sum")


def test_sum_ranks_by_the_sum_of_the_confidences_of_the_rules_that_fire() -> None:
    # Zeta: one rule, 0.9. Alpha: 0.5 + 0.6 = 1.1 (two antecedents inside the query). Beta:
    # 0.7, plus a rule whose antecedent is not inside the query.
    rules = [
        rule(["Theta"], "Zeta", 9, 10),
        rule(["Theta"], "Alpha", 5, 10),
        rule(["Eta"], "Alpha", 6, 10),
        rule(["Theta"], "Beta", 7, 10),
        rule(["Theta", "Delta"], "Beta", 10, 10),
    ]
    r = summed(rules)
    assert r.recommend(["Theta", "Eta"], limit=3) == ["Alpha", "Zeta", "Beta"]
    assert r.explain(["Theta", "Eta", "Delta"], limit=3).songs == ["Beta", "Alpha", "Zeta"]
    # The index serves both rankings; "best" is the contract's order.
    assert r.explain(["Theta", "Eta"], limit=3, ranking="best").songs == ["Zeta", "Beta", "Alpha"]


def test_equal_sums_fall_back_to_the_best_rule_then_lift_then_name() -> None:
    # Eta: 0.5 + 0.5; Zeta: 1.0 alone (the better rule wins the tie); Gamma and Delta: 0.5 + 0.5
    # with a best rule equal to Eta's: Eta has the larger lift (rarest song), then the name.
    rules = [
        rule(["Theta"], "Eta", 5, 10),
        rule(["Alpha"], "Eta", 5, 10),
        rule(["Theta"], "Zeta", 10, 10),
        rule(["Theta"], "Delta", 5, 10),
        rule(["Alpha"], "Delta", 5, 10),
    ]
    assert summed(rules).recommend(["Theta", "Alpha"], limit=3) == ["Zeta", "Eta", "Delta"]
    songs = [("b", 10), ("a", 10), ("q", 50), ("r", 50)]
    ties = [([2], 0, 1, 2), ([3], 0, 1, 2), ([2], 1, 1, 2), ([3], 1, 1, 2)]
    assert summed(ties, songs).recommend(["q", "r"], limit=2) == ["a", "b"]


def test_sums_are_fixed_point_within_the_documented_tolerance() -> None:
    # Exactly 1/3 + 1/3 + 1/3 = 1, but each 1/3 weighs round(2^31 / 3) = 715,827,883, so the
    # three sum to 2^31 + 1, one unit over the single certain rule (the error allowed for four
    # rules is 4 · 2^-32 of a confidence).
    assert 3 * fixed_point(Fraction(1, 3)) == 2**31 + 1
    rules = [
        rule(["Theta"], "Zeta", 10, 10),
        rule(["Theta"], "Alpha", 1, 3),
        rule(["Eta"], "Alpha", 2, 6),
        rule(["Delta"], "Alpha", 3, 9),
    ]
    assert summed(rules).recommend(["Theta", "Eta", "Delta"], limit=2) == ["Alpha", "Zeta"]


def test_a_repeated_rule_counts_once_in_a_sum() -> None:
    # {Theta} → Eta three times (once with a lower confidence): 0.6 once, not 1.6 or 1.8.
    rules = [rule(["Theta"], "Eta", 6, 10)] * 2 + [rule(["Theta"], "Eta", 4, 10)]
    rules += [rule(["Theta"], "Zeta", 7, 10)]
    rs = every_build(make_ruleset(SONGS, rules))
    expected = Recommendation(["Zeta", "Eta"], 2, [])
    assert explained_by_switch(rs, ["Theta"], 2, "sum") == [expected] * 2 * PATHS


def test_explain_counts_the_songs_from_rules_and_reports_unknown_songs() -> None:
    r = engine([rule(["Theta"], "Eta", 8, 10), rule(["Theta"], "Beta", 9, 10)])
    assert r.explain(["nope", "Theta", "nope", "theta", "also"], limit=4) == Recommendation(
        ["Beta", "Eta", "Alpha", "Gamma"], 2, ["nope", "also"]
    )
    assert r.explain(["Theta"], limit=1) == Recommendation(["Beta"], 1, [])
    assert r.explain(["Alpha"], limit=2) == Recommendation(["Beta", "Gamma"], 0, [])
    many = [f"unknown {i}" for i in range(30)]
    assert r.explain(many, limit=1).unknown == many[:UNKNOWN_LIST_LIMIT]


def test_rankings_are_checked() -> None:
    ruleset = make_ruleset(SONGS, [rule(["Theta"], "Eta", 8, 10)])
    with pytest.raises(ValueError, match="ranking must be one of best, sum"):
        Recommender.from_ruleset(ruleset, ranking="max")
    with pytest.raises(ValueError, match="ranking must be one of"):
        Recommender.from_ruleset(ruleset).explain(["Theta"], ranking="mean")
    assert recommender.RANKINGS == ("best", "sum")
    assert recommender.DEFAULT_RANKING in recommender.RANKINGS


def test_rule_counts_must_be_confidences() -> None:
    with pytest.raises(ValueError, match="antecedent's count"):
        engine([rule(["Theta"], "Eta", 11, 10)])


RANKING_NAMES = st.sampled_from(recommender.RANKINGS)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ruleset=wider_rulesets(), limit=st.integers(1, 16), ranking=RANKING_NAMES)
@pytest.mark.slow
def test_every_query_path_explains_as_the_brute_force(
    data: st.DataObject, ruleset: RuleSet, limit: int, ranking: str
) -> None:
    size = data.draw(st.integers(0, len(ruleset.song_names)))
    query = data.draw(st.permutations(ruleset.song_names))[:size]
    query += data.draw(st.lists(st.sampled_from(["nope", "NOPE", "s1 "]), max_size=3))
    expected = brute_force_explain(ruleset, query, limit, ranking)
    answers = explained_by_switch(every_build(ruleset), query, limit, ranking)
    assert answers == [expected] * 2 * PATHS


@settings(max_examples=200, deadline=None)
@given(data=st.data(), ruleset=wider_rulesets(messy=True), limit=st.integers(1, 16))
def test_sums_count_repeated_rules_and_songs_once(
    data: st.DataObject, ruleset: RuleSet, limit: int
) -> None:
    query = data.draw(st.lists(st.sampled_from(ruleset.song_names), max_size=12))
    expected = brute_force_explain(ruleset, query, limit, "sum")
    assert explained_by_switch(every_build(ruleset), query, limit, "sum") == [expected] * 2 * PATHS


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ruleset=wider_rulesets(), limit=st.integers(1, 16))
@pytest.mark.slow
def test_the_sum_order_is_the_exact_order_up_to_the_tolerance(
    data: st.DataObject, ruleset: RuleSet, limit: int
) -> None:
    # Candidate a listed before b: their exact sums (Fractions) may be in the other order only
    # by at most the rounding of their rules, (n_a + n_b) · 2^-32; so may a candidate left out.
    query = data.draw(st.permutations(ruleset.song_names))[: data.draw(st.integers(0, 14))]
    chosen, _ = brute_force_match(ruleset, query)
    exact: dict[str, Fraction] = {}
    rules: dict[str, int] = {}
    for (_, consequent), confidence in firing_rules(ruleset, chosen).items():
        exact[consequent] = exact.get(consequent, Fraction(0)) + confidence
        rules[consequent] = rules.get(consequent, 0) + 1
    answer = summed_build(ruleset).explain(query, limit)
    listed = answer.songs[: answer.from_rules]
    assert set(listed) <= set(exact)
    assert len(listed) == min(limit, len(exact))
    tolerance = Fraction(1, 2 ** (WEIGHT_BITS + 1))
    after = [(a, b) for i, a in enumerate(listed) for b in listed[i + 1 :]]
    after += [(listed[-1], b) for b in exact if b not in listed]
    for a, b in after:
        assert exact[b] - exact[a] <= (rules[a] + rules[b]) * tolerance


def summed_build(ruleset: RuleSet) -> Recommender:
    return Recommender.from_ruleset(ruleset, ranking="sum")


@pytest.mark.slow
def test_a_large_random_rule_set_is_summed_as_the_brute_force_sums() -> None:
    # Popular songs in hundreds of rules: the numpy accumulation (more than FEW_MATCHES rules
    # fire) on the scan and in the Python small-query path, and long runs in the compiled one.
    rng = np.random.default_rng(11)
    n_songs, transactions = 200, 400
    counts = rng.integers(1, transactions, n_songs)
    songs = [(f"song {i:03}", int(counts[i])) for i in range(n_songs)]
    weights = np.sort(rng.zipf(1.4, n_songs).astype(float))[::-1]
    weights /= weights.sum()
    rules: dict[tuple[tuple[int, ...], int], Rule] = {}
    while len(rules) < 5000:
        size = int(rng.choice([1, 1, 1, 2, 3]))
        antecedent = tuple(sorted(rng.choice(n_songs, size, replace=False, p=weights).tolist()))
        consequent = int(rng.integers(n_songs))
        if consequent in antecedent:
            continue
        antecedent_count = int(rng.integers(1, 12))
        count = int(rng.integers(1, antecedent_count + 1))
        rules[antecedent, consequent] = (antecedent, consequent, count, antecedent_count)
    ruleset = make_ruleset(songs, list(rules.values()), transactions)
    rs = every_build(ruleset)
    for size in (1, 2, 3, 5, 8, 9, 20, 60):
        for _ in range(4):
            query = [songs[i][0] for i in rng.choice(n_songs, size, replace=False, p=weights)]
            for limit in (10, 100):
                expected = brute_force_explain(ruleset, query, limit, "sum")
                answers = explained_by_switch(rs, query, limit, "sum")
                assert answers == [expected] * 2 * PATHS
