"""Counting itemsets before mining: exact against mining itself, and stopped early on explosions."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mining import estimate
from mining.engines import mine_itemsets
from mining.estimate import Spectrum, count_itemsets
from mining.transactions import Transactions, build_transactions
from tests.helpers.playlists import shared_runs


def transactions_of(baskets: list[list[str]]) -> Transactions:
    names = sorted(set(itertools.chain.from_iterable(baskets)))
    code = {name: i for i, name in enumerate(names)}
    pairs = [(p, code[s]) for p, basket in enumerate(baskets) for s in basket]
    return build_transactions([p for p, _ in pairs], [s for _, s in pairs], names)


def mined_spectrum(tx: Transactions, min_count: int, max_len: int) -> Counter[tuple[int, int]]:
    """(size, exact count) → number of itemsets, from the itemsets mining really finds."""
    itemsets = mine_itemsets(tx, min_count, max_len, "pyfim")
    return Counter((len(k), v) for k, v in itemsets.items())


def counted_spectrum(spectrum: Spectrum) -> Counter[tuple[int, int]]:
    return Counter(
        {
            (size, spectrum.min_count + offset): int(number)
            for size, row in spectrum.by_size.items()
            for offset, number in enumerate(row.tolist())
            if number
        }
    )


def never(_: Spectrum) -> bool:
    return False


SONGS = [f"song {i}" for i in range(9)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    baskets=st.lists(
        st.lists(st.sampled_from(SONGS), min_size=1, max_size=9), min_size=1, max_size=25
    ),
    min_count=st.integers(min_value=1, max_value=6),
    max_len=st.integers(min_value=1, max_value=6),
)
def test_counts_equal_the_itemsets_mining_finds(
    baskets: list[list[str]], min_count: int, max_len: int
) -> None:
    tx = transactions_of(baskets)
    spectrum = count_itemsets(tx, min_count, max_len, never)
    assert spectrum.complete
    assert counted_spectrum(spectrum) == mined_spectrum(tx, min_count, max_len)
    # Without pyfim, singletons and pairs are counted with sparse products: the same numbers.
    width = int(np.count_nonzero(tx.song_counts >= min_count))
    if width:
        pairs = estimate._pair_spectrum(tx, min_count, width)
        expected = mined_spectrum(tx, min_count, 2)
        assert counted_spectrum(Spectrum(min_count, 2, 2, pairs, spectrum.occurrences)) == (
            expected
        )
    # One spectrum answers for every higher count too.
    higher = min_count + 1
    assert spectrum.itemsets(higher) == dict(
        Counter(len(k) for k in mine_itemsets(tx, higher, max_len, "pyfim"))
    )
    assert spectrum.itemsets(min_count) == dict(
        Counter(len(k) for k in mine_itemsets(tx, min_count, max_len, "pyfim"))
    )


def test_songs_in_every_playlist_are_counted() -> None:
    # pyfim's spectrum leaves out itemsets made only of songs in every playlist.
    tx = transactions_of([["x", "y", "a"], ["x", "y"], ["x", "y", "a", "b"]])
    spectrum = count_itemsets(tx, 1, 3, never)
    assert counted_spectrum(spectrum) == mined_spectrum(tx, 1, 3)
    assert spectrum.itemsets(3) == {1: 2, 2: 1}


def test_an_explosion_is_counted_at_once_without_mining_it() -> None:
    tx = transactions_of(shared_runs(run=40, pairs=3, noise=5))
    spectrum = count_itemsets(tx, 2, 8, never)
    per_run = sum(math.comb(40, k) for k in range(1, 9))
    assert spectrum.complete
    total = sum(spectrum.itemsets(2).values())
    assert total >= 3 * per_run
    assert total > 300_000_000


def test_counting_stops_at_the_first_size_over_the_limit() -> None:
    tx = transactions_of(shared_runs(run=40, pairs=3, noise=5))
    seen: list[int] = []

    def over_a_million(spectrum: Spectrum) -> bool:
        seen.append(spectrum.counted_sizes)
        return sum(spectrum.itemsets(spectrum.min_count).values()) > 1_000_000

    spectrum = count_itemsets(tx, 2, 8, over_a_million)
    assert not spectrum.complete
    # Sizes 1..4 of three 40-song runs: 3 * 102,090 < 10^6; up to 5: 3 * 760,098 > 10^6.
    assert seen == [2, 3, 4, 5]
    assert spectrum.counted_sizes == 5
    assert spectrum.itemsets(2)[5] == 3 * math.comb(40, 5)


def test_max_len_past_the_longest_playlist_is_clamped() -> None:
    tx = transactions_of([["a", "b", "c"], ["a", "b"], ["b", "c"]])
    spectrum = count_itemsets(tx, 1, 10**9, never)
    assert spectrum.max_len == 3
    assert spectrum.complete
    nothing = count_itemsets(tx, 4, 8, never)
    assert nothing.complete and nothing.itemsets(4) == {}


def test_the_memory_model_grows_with_itemsets_occurrences_and_rules() -> None:
    base = estimate.mining_bytes({}, 0, "pyfim")
    assert base == estimate.ENGINE_COSTS["pyfim"].fixed
    pairs = estimate.mining_bytes({1: 1000, 2: 1_000_000}, 10_000, "pyfim")
    without_rules = estimate.mining_bytes({1: 1000, 2: 1_000_000}, 10_000, "pyfim", rules=False)
    assert pairs >= without_rules > 200 * 1_000_000
    assert estimate.mining_bytes({1: 1000, 2: 1_000_000}, 10_000, "mlxtend") > pairs
    occurrences = estimate.mining_bytes({1: 10}, 10_000_000, "pyfim", rules=False)
    assert occurrences > 10_000_000 * 50


@pytest.mark.parametrize("min_count", [1, 2, 5])
def test_occurrences_are_those_of_the_songs_frequent_at_each_count(min_count: int) -> None:
    tx = transactions_of(shared_runs(run=6, pairs=4, noise=8, seed=3))
    spectrum = count_itemsets(tx, min_count, 2, never)
    for count in range(min_count, tx.playlists + 1):
        expected = int(tx.song_counts[tx.song_counts >= count].sum())
        assert spectrum.occurrences[count - min_count] == expected
