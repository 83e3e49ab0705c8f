"""Rules are exact: thresholds compared on integers, equal to brute force on random data."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mining import itemsets as itemsets_module
from mining.engines import ENGINES, mine_itemsets
from mining.itemsets import ItemsetTable
from mining.rules import derive_packed, derive_rules, exact_fraction, min_count
from mining.rulesfile import pack_rules
from mining.transactions import build_transactions


def test_thresholds_are_the_decimals_written() -> None:
    assert exact_fraction(0.7) == Fraction(7, 10)
    assert exact_fraction(0.025) == Fraction(1, 40)
    # The exact answers' minimum counts on 2,300 playlists.
    assert min_count(0.025, 2300) == 58
    assert min_count(0.05, 2300) == 115
    # On the threshold exactly: 2 of 8 playlists is a support of 0.25.
    assert min_count(0.25, 8) == 2
    assert min_count(0.1, 10) == 1
    assert min_count(1.0, 10) == 10


def test_a_rule_whose_confidence_equals_the_threshold_is_kept() -> None:
    # 77/110 is exactly 0.7, but from float supports (here over 216 playlists) it comes out
    # as 0.6999999999999998: that is how mlxtend's association_rules loses such rules.
    assert (77 / 216) / (110 / 216) < 0.7
    itemsets = {(0,): 110, (1,): 100, (0, 1): 77}
    assert sorted(derive_rules(itemsets, 0.7)) == [((0,), 1, 77, 110), ((1,), 0, 77, 100)]
    assert derive_rules(itemsets, 0.771) == []
    assert derive_rules(itemsets, 0.77) == [((1,), 0, 77, 100)]


def test_every_subset_yields_one_rule_per_consequent() -> None:
    itemsets = {(0,): 4, (1,): 4, (2,): 4, (0, 1): 4, (0, 2): 4, (1, 2): 4, (0, 1, 2): 4}
    rules = derive_rules(itemsets, 1.0)
    assert len(rules) == 6 + 3
    assert ((0, 2), 1, 4, 4) in rules


def brute_force(
    baskets: list[set[str]], support: str, confidence: str, max_len: int
) -> tuple[dict[frozenset[str], int], set[tuple[frozenset[str], str, int, int]]]:
    """All frequent itemsets by counting every subset, and every rule, in exact fractions."""
    n = len(baskets)
    songs = sorted(set().union(*baskets))
    frequent = {}
    for size in range(1, max_len + 1):
        for combo in itertools.combinations(songs, size):
            count = sum(1 for b in baskets if b.issuperset(combo))
            if Fraction(count, n) >= Fraction(support):
                frequent[frozenset(combo)] = count
    rules = set()
    for itemset, count in frequent.items():
        for consequent in itemset if len(itemset) > 1 else ():
            antecedent = itemset - {consequent}
            if Fraction(count, frequent[antecedent]) >= Fraction(confidence):
                rules.add((antecedent, consequent, count, frequent[antecedent]))
    return frequent, rules


SONGS = ["a", "b", "c, with comma", "d", "e", "f", "g"]
# Decimals that hit count/n exactly for many n (so the ≥ boundary is exercised).
SUPPORTS = ["0.05", "0.1", "0.125", "0.2", "0.25", "0.3", "0.4", "0.5", "0.6", "0.75", "1"]
CONFIDENCES = ["0", "0.25", "0.3", "0.5", "0.6", "2.5e-1", "0.7", "0.75", "0.8", "0.9", "1"]


def check_against_brute_force(
    baskets: list[list[str]], support: str, confidence: str, max_len: int, engines: list[str]
) -> None:
    names = sorted(set(itertools.chain.from_iterable(baskets)))
    code = {name: i for i, name in enumerate(names)}
    pairs = [(p, code[s]) for p, basket in enumerate(baskets) for s in basket]
    tx = build_transactions([p for p, _ in pairs], [s for _, s in pairs], names)
    expected_itemsets, expected_rules = brute_force(
        [set(b) for b in baskets], support, confidence, max_len
    )
    threshold = min_count(float(support), len(baskets))
    for engine in engines:
        itemsets = mine_itemsets(tx, threshold, max_len, engine)
        by_name = {frozenset(tx.song_names[i] for i in k): v for k, v in itemsets.items()}
        assert by_name == expected_itemsets, engine
        rules = {
            (frozenset(tx.song_names[i] for i in a), tx.song_names[c], n, na)
            for a, c, n, na in derive_rules(itemsets, float(confidence))
        }
        assert rules == expected_rules, engine


BASKETS = st.lists(
    st.lists(st.sampled_from(SONGS), min_size=1, max_size=7), min_size=1, max_size=20
)


# Random baskets over a few songs, and thresholds that often hit a count exactly.
EXAMPLES = {
    "baskets": BASKETS,
    "support": st.sampled_from(SUPPORTS),
    "confidence": st.sampled_from(CONFIDENCES),
    "max_len": st.integers(min_value=2, max_value=5),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**EXAMPLES)
def test_mined_rules_equal_brute_force(
    baskets: list[list[str]], support: str, confidence: str, max_len: int
) -> None:
    check_against_brute_force(baskets, support, confidence, max_len, ["mlxtend", "pyfim"])


# A few examples: each is a handful of Spark jobs (~1 s on the shared session).
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**EXAMPLES)
def test_spark_rules_equal_brute_force(
    spark: object, baskets: list[list[str]], support: str, confidence: str, max_len: int
) -> None:
    check_against_brute_force(baskets, support, confidence, max_len, ["spark"])


@pytest.mark.parametrize("engine", ENGINES)
def test_songs_in_every_playlist_form_frequent_itemsets(engine: str) -> None:
    # pyfim leaves out itemsets made only of such songs; they must be there all the same.
    baskets = [["x", "y", "a"], ["x", "y"], ["x", "y", "a", "b"], ["x", "y", "b"]]
    names = ["a", "b", "x", "y"]
    pairs = [(p, names.index(s)) for p, b in enumerate(baskets) for s in b]
    tx = build_transactions([p for p, _ in pairs], [s for _, s in pairs], names)
    x, y = tx.song_names.index("x"), tx.song_names.index("y")
    itemsets = mine_itemsets(tx, 1, 3, engine)
    assert itemsets[(min(x, y),)] == itemsets[(max(x, y),)] == 4
    assert itemsets[tuple(sorted((x, y)))] == 4
    assert len(itemsets) == len(brute_force([set(b) for b in baskets], "0.25", "1", 3)[0])
    assert max(map(len, itemsets)) == 3


def test_packed_rules_come_in_the_rules_files_canonical_order() -> None:
    tx = build_transactions(
        [p for p in range(40) for _ in range(4)],
        [(p * 7 + k * 3) % 11 for p in range(40) for k in range(4)],
        [f"s{i}" for i in range(11)],
    )
    itemsets = mine_itemsets(tx, 2, 4, "pyfim")
    packed = derive_packed(itemsets, 0.3)
    assert len(packed[2]) > 50
    reference = pack_rules(derive_rules(itemsets, 0.3))
    for ours, theirs in zip(packed, reference, strict=True):
        assert ours.dtype == theirs.dtype == np.uint32
        assert np.array_equal(ours, theirs)


def test_a_threshold_with_many_digits_is_still_compared_exactly() -> None:
    itemsets = {(0,): 10**7, (1,): 10**7, (0, 1): 1_234_567}
    both = [((0,), 1, 1_234_567, 10**7), ((1,), 0, 1_234_567, 10**7)]
    assert derive_rules(itemsets, 0.1234567) == both
    # 15 significant digits: count · den overflows 64 bits, so Python integers decide.
    assert derive_rules(itemsets, 0.123456700000001) == []
    assert derive_rules(itemsets, 0.123456699999999) == both


def test_lookups_stay_exact_when_row_hashes_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    itemsets = {(0,): 5, (1,): 4, (2,): 3, (0, 1): 3, (0, 2): 2, (1, 2): 2, (0, 1, 2): 2}
    expected = sorted(derive_rules(itemsets, 0.5))

    def colliding(rows: np.ndarray) -> np.ndarray:
        return np.zeros(len(rows), dtype=np.uint64)

    monkeypatch.setattr(itemsets_module, "row_hashes", colliding)
    table = ItemsetTable.from_mapping(itemsets)
    assert table[(0, 2)] == 2 and table[(2, 0)] == 2
    assert sorted(derive_rules(table, 0.5)) == expected
    with pytest.raises(KeyError):
        table[(3,)]
