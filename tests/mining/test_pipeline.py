"""``mining.pipeline``: the job's own mining, in-process and guarded, with every support form."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from mining.engines import mine_itemsets
from mining.errors import MemoryBudgetError
from mining.estimate import Spectrum, count_itemsets
from mining.job import run_job
from mining.memory import GIB, MIB, tree_memory
from mining.pipeline import (
    lowest_fitting_count,
    mine_ruleset,
    mine_ruleset_guarded,
)
from mining.reader import read_playlists
from mining.rules import derive_rules
from mining.rulesfile import RULES_FILENAME, read_rules
from mining.settings import Settings
from mining.transactions import Transactions
from tests.helpers.playlists import shared_runs, write_playlists_csv

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@pytest.fixture(scope="module")
def exploding(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "shared-runs.csv"
    return write_playlists_csv(path, shared_runs(pairs=20, run=36, noise=12))


@pytest.fixture(scope="module")
def transactions(exploding: Path) -> Transactions:
    return read_playlists(exploding).transactions


def settings_for(path: Path, **changes: object) -> Settings:
    base = Settings(dataset_url=str(path), min_support="2 playlists", max_len=2)
    return replace(base, **changes)  # type: ignore[arg-type]


def roomy() -> int:
    """A limit with a GiB to spare over what this test process holds now."""
    return tree_memory(os.getpid()) + GIB


def rules_of(
    transactions: Transactions, count: int, max_len: int, confidence: float
) -> set[tuple[tuple[str, ...], str, int, int]]:
    itemsets = mine_itemsets(transactions, count, max_len, "pyfim")
    return {
        (tuple(transactions.song_names[i] for i in a), transactions.song_names[c], n, na)
        for a, c, n, na in derive_rules(itemsets, confidence)
    }


def test_the_job_commits_exactly_what_mine_ruleset_gives(tmp_path: Path, exploding: Path) -> None:
    settings = replace(settings_for(exploding), data_dir=tmp_path / "data", min_confidence=0.3)
    run_job(settings)
    committed = read_rules(tmp_path / "data" / RULES_FILENAME)
    mined = mine_ruleset(read_playlists(exploding).transactions, settings, limit=roomy())
    assert committed.same_rules(mined.ruleset)
    assert committed.header.min_count == mined.min_count == 2
    assert committed.header.parameters.min_support == "2 playlists"


@pytest.mark.parametrize("engine", ["pyfim", "mlxtend"])
def test_every_form_of_a_support_gives_the_rules_of_its_count(
    transactions: Transactions, exploding: Path, engine: str
) -> None:
    n = transactions.playlists
    expected = rules_of(transactions, 3, 2, 0.2)
    for spec in ("3 playlists", 3 / n, 2.5 / n):
        settings = settings_for(exploding, min_support=spec, min_confidence=0.2, engine=engine)
        mined = mine_ruleset(transactions, settings, limit=roomy())
        assert mined.min_count == 3
        assert set(mined.ruleset.iter_rules()) == expected
        assert mined.itemsets == len(mine_itemsets(transactions, 3, 2, "pyfim"))
        assert mined.ruleset.header.rule_count == len(expected)


def full_spectrum(transactions: Transactions, count: int, max_len: int) -> Spectrum:
    return count_itemsets(transactions, count, max_len, lambda _: False)


@pytest.mark.parametrize("budget_mib", [24, 64, 400])
def test_auto_finds_the_lowest_count_that_fits(transactions: Transactions, budget_mib: int) -> None:
    budget = budget_mib * MIB
    count, _ = lowest_fitting_count(transactions, 2, 8, "pyfim", budget)
    # Brute force: the need of every count, each from a spectrum counted in full.
    assert full_spectrum(transactions, count, 8).need(count, "pyfim") <= budget
    if count > 2:
        below = count - 1
        assert full_spectrum(transactions, below, 8).need(below, "pyfim") > budget


def test_auto_resolves_mines_and_records_what_it_chose(
    transactions: Transactions, exploding: Path
) -> None:
    settings = settings_for(exploding, min_support="auto", max_len=8, auto_floor=2)
    mined = mine_ruleset(transactions, settings, limit=tree_memory(os.getpid()) + 256 * MIB)
    # Runs shared by two playlists explode at 2 playlists and vanish at 3.
    assert mined.min_count == 3
    header = mined.ruleset.header
    assert header.min_count == 3
    assert header.parameters == settings.parameters
    assert (header.parameters.auto_floor, header.parameters.auto_max_rules) == (
        2,
        settings.auto_max_rules,
    )
    assert set(mined.ruleset.iter_rules()) == rules_of(transactions, 3, 8, 0.7)


def test_auto_raises_the_count_until_the_rules_fit_the_cap(
    transactions: Transactions, exploding: Path
) -> None:
    uncapped = mine_ruleset(
        transactions,
        settings_for(exploding, min_support="2 playlists", min_confidence=0.1),
        limit=roomy(),
    )
    cap = uncapped.ruleset.header.rule_count // 3
    settings = settings_for(
        exploding, min_support="auto", auto_floor=1, auto_max_rules=cap, min_confidence=0.1
    )
    mined = mine_ruleset(transactions, settings, limit=roomy())
    count = mined.min_count
    assert count > 1
    assert mined.ruleset.header.rule_count <= cap
    assert set(mined.ruleset.iter_rules()) == rules_of(transactions, count, 2, 0.1)
    assert len(rules_of(transactions, count - 1, 2, 0.1)) > cap
    assert mined.itemsets == len(mine_itemsets(transactions, count, 2, "pyfim"))


def test_a_support_that_cannot_fit_is_refused_with_changes_that_do(
    transactions: Transactions, exploding: Path
) -> None:
    settings = settings_for(exploding, max_len=8)
    limit = tree_memory(os.getpid()) + 128 * MIB
    with pytest.raises(MemoryBudgetError) as caught:
        mine_ruleset(transactions, settings, limit=limit)
    message = str(caught.value)
    assert message.startswith("memory budget exceeded before mining: MIN_SUPPORT=2 playlists")
    assert "raise MIN_SUPPORT to 3 playlists" in message
    assert "lower MAX_LEN to " in message
    assert "\n" not in message
    shorter = int(message.split("lower MAX_LEN to ")[1].split(maxsplit=1)[0])
    # Each suggestion, taken, fits the same budget.
    mine_ruleset(transactions, replace(settings, min_support="3 playlists"), limit=limit)
    mine_ruleset(transactions, replace(settings, max_len=shorter), limit=limit)


def test_max_len_past_the_longest_playlist_mines_the_longest(
    transactions: Transactions, exploding: Path
) -> None:
    settings = settings_for(exploding, min_support="3 playlists", max_len=100_000)
    mined = mine_ruleset(transactions, settings, limit=roomy())
    assert mined.max_len < 100
    assert set(mined.ruleset.iter_rules()) == rules_of(transactions, 3, mined.max_len, 0.7)


def test_the_guarded_run_gives_the_same_rules_and_its_peak(
    transactions: Transactions, exploding: Path
) -> None:
    settings = settings_for(exploding, min_confidence=0.2)
    inline = mine_ruleset(transactions, settings, limit=roomy())
    guarded = mine_ruleset_guarded(transactions, settings, limit=roomy())
    assert guarded.ruleset.same_rules(inline.ruleset)
    assert guarded.min_count == inline.min_count
    assert inline.peak_rss_bytes is None
    assert guarded.peak_rss_bytes is not None and guarded.peak_rss_bytes > 10 * MIB


@pytest.mark.slow
def test_the_guarded_run_is_stopped_at_the_limit(
    transactions: Transactions, exploding: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without pyfim nothing counts past the pairs, so mlxtend starts on the explosion.
    monkeypatch.setattr("mining.estimate.pyfim_available", lambda: False)
    settings = settings_for(exploding, max_len=8, engine="mlxtend")
    with pytest.raises(MemoryBudgetError, match=r"grew past .* while mining the itemsets"):
        mine_ruleset_guarded(transactions, settings, limit=tree_memory(os.getpid()) + 300 * MIB)
