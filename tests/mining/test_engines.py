"""Every engine gives the exact published answers and identical itemsets and rules."""

from __future__ import annotations

import csv
import functools
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from mining.engines import ENGINES, Itemsets, mine_itemsets
from mining.reader import read_playlists
from mining.rules import derive_rules, min_count
from mining.transactions import Transactions, build_transactions

DATA = Path(__file__).parents[1] / "data"

# shared/data/synthetic-playlists/PROVENANCE.md, max itemset length 8, confidence 0.7.
SYNTH_DS1 = {
    0.05: (6_860, [719, 1_917, 2_541, 1_429, 245, 9], 7_283),
    0.025: (76_873, [1_232, 8_168, 22_823, 26_518, 14_415, 3_460, 256, 1], 99_528),
}


@functools.cache
def synth_ds1() -> Transactions:
    return read_playlists(DATA / "synth_ds1.csv.xz").transactions


@functools.cache
def synth_ds1_itemsets(support: float, engine: str) -> Itemsets:
    tx = synth_ds1()
    return mine_itemsets(tx, min_count(support, tx.playlists), 8, engine)


def check_synth_ds1(support: float, engine: str) -> None:
    itemsets = synth_ds1_itemsets(support, engine)
    count, by_size, rule_count = SYNTH_DS1[support]
    assert len(itemsets) == count
    sizes = Counter(map(len, itemsets))
    assert [sizes[k] for k in range(1, len(by_size) + 1)] == by_size
    assert len(derive_rules(itemsets, 0.7)) == rule_count


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.slow
def test_synth_ds1_at_support_0_05(engine: str) -> None:
    check_synth_ds1(0.05, engine)


def test_synth_ds1_at_support_0_025_pyfim() -> None:
    check_synth_ds1(0.025, "pyfim")


@pytest.mark.slow  # ~5 s: mlxtend's fpgrowth in pure Python
def test_synth_ds1_at_support_0_025_mlxtend_and_both_engines_agree() -> None:
    check_synth_ds1(0.025, "mlxtend")
    mlxtend, pyfim = synth_ds1_itemsets(0.025, "mlxtend"), synth_ds1_itemsets(0.025, "pyfim")
    assert mlxtend == pyfim
    assert set(derive_rules(mlxtend, 0.7)) == set(derive_rules(pyfim, 0.7))


# ~20-75 s: Spark's FPGrowth on 2,300 long playlists (local[2]); `make test-spark` runs it.
@pytest.mark.slow
@pytest.mark.slow_spark
def test_synth_ds1_at_support_0_025_spark_and_pyfim_agree(spark: object) -> None:
    check_synth_ds1(0.025, "spark")
    spark_itemsets = synth_ds1_itemsets(0.025, "spark")
    assert spark_itemsets == synth_ds1_itemsets(0.025, "pyfim")
    assert set(derive_rules(spark_itemsets, 0.7)) == set(
        derive_rules(synth_ds1_itemsets(0.025, "pyfim"), 0.7)
    )


def test_a_support_below_every_song_gives_nothing() -> None:
    tx = synth_ds1()
    for engine in ENGINES:
        assert mine_itemsets(tx, tx.playlists + 1, 8, engine) == {}


def read_fimi(name: str) -> Transactions:
    """A FIMI .dat file (one transaction per line, items separated by spaces)."""
    playlists: list[int] = []
    songs: list[int] = []
    names: list[str] = []
    code: dict[str, int] = {}
    lines = (DATA / "fimi" / name).read_text().splitlines()
    for p, line in enumerate(line for line in lines if line.strip()):
        for item in line.split():
            if item not in code:
                code[item] = len(names)
                names.append(item)
            playlists.append(p)
            songs.append(code[item])
    return build_transactions(playlists, songs, names)


def fimi_digest(tx: Transactions, itemsets: Itemsets) -> str:
    """fimi_reference_counts.csv's digest: sha1 over the sorted lines of items sorted as text."""
    lines = sorted(
        "\x1f".join(sorted(tx.song_names[i] for i in itemset)) + "\n" for itemset in itemsets
    )
    return hashlib.sha1("".join(lines).encode()).hexdigest()[:16]


def fimi_reference() -> dict[tuple[str, float], dict[str, str]]:
    with open(DATA / "fimi" / "fimi_reference_counts.csv", newline="") as f:
        return {(row["dataset"], float(row["min_support"])): row for row in csv.DictReader(f)}


# Two supports per dataset; mushroom has an item in every transaction (pyfim's quirk).
FIMI_CASES = [("chess.dat", 0.9), ("chess.dat", 0.8), ("mushroom.dat", 0.5), ("mushroom.dat", 0.3)]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("dataset", "support"), FIMI_CASES)
def test_fimi_reference_counts(dataset: str, support: float, engine: str) -> None:
    reference = fimi_reference()[(dataset, support)]
    tx = read_fimi(dataset)
    assert tx.playlists == int(reference["n_tx"])
    threshold = min_count(support, tx.playlists)
    assert threshold == int(reference["min_count"])
    itemsets = mine_itemsets(tx, threshold, None, engine)
    assert len(itemsets) == int(reference["n_frequent"])
    assert max(map(len, itemsets)) == int(reference["max_itemset_len"])
    assert fimi_digest(tx, itemsets) == reference["itemsets_digest"]
