"""Reading playlists: RFC 4180 CSV in either header shape, compressed or not, with clear errors."""

from __future__ import annotations

import gzip
import lzma
import random
from pathlib import Path

import numpy as np
import pytest

from mining.errors import MiningInputError
from mining.reader import Transactions, build_transactions, read_playlists
from tests.helpers.playlist_files import (
    BAD_INPUTS,
    COURSE_SHAPE,
    EXPECTED,
    REAL_SHAPE,
    SKIPPED_ROWS,
)

DATA = Path(__file__).parents[1] / "data"


def playlists_by_name(transactions: Transactions) -> list[set[str]]:
    names = transactions.song_names
    return [
        {names[s] for s in transactions.playlist(p).tolist()} for p in range(transactions.playlists)
    ]


@pytest.mark.parametrize("text", [REAL_SHAPE, COURSE_SHAPE], ids=["real", "course"])
def test_both_header_shapes_give_distinct_songs_per_playlist(tmp_path: Path, text: str) -> None:
    path = tmp_path / "playlists.csv"
    path.write_text(text, encoding="utf-8")
    result = read_playlists(path)
    assert sorted(map(sorted, playlists_by_name(result.transactions))) == sorted(
        map(sorted, EXPECTED)
    )
    assert result.skipped_rows == 0
    assert result.rows == text.count("\n") - 1 - 1  # minus the header and the quoted break


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("playlists.csv.gz", gzip.compress),
        ("playlists.csv.xz", lzma.compress),
        # Recognised by content, not by name: a download may be stored under any name.
        ("download-1234-playlists", gzip.compress),
    ],
)
def test_compressed_files_read_like_plain_ones(tmp_path: Path, name: str, compress) -> None:
    path = tmp_path / name
    path.write_bytes(compress(REAL_SHAPE.encode()))
    assert sorted(map(sorted, playlists_by_name(read_playlists(path).transactions))) == sorted(
        map(sorted, EXPECTED)
    )


def test_song_ids_follow_playlist_count_then_name_and_counts_are_per_playlist(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.csv"
    rows = ["pid,track_name"]
    # b in 3 playlists, a and c in 2 (a before c by name), z in 1; "b" twice in playlist 1.
    for pid, song in [(1, "b"), (1, "b"), (1, "c"), (2, "b"), (2, "a"), (3, "b"), (3, "a")]:
        rows.append(f"{pid},{song}")
    rows += ["4,c", "4,z"]
    path.write_text("\n".join(rows) + "\n")
    tx = read_playlists(path).transactions
    assert tx.song_names == ("b", "a", "c", "z")
    assert tx.song_counts.tolist() == [3, 2, 2, 1]
    assert tx.playlists == 4
    for p in range(tx.playlists):
        ids = tx.playlist(p)
        assert np.all(np.diff(ids) > 0), "song ids in a playlist are ascending and distinct"


def test_rows_without_pid_or_track_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(SKIPPED_ROWS)
    result = read_playlists(path)
    assert (result.rows, result.skipped_rows) == (8, 4)
    # pid is text: "abc" and "0012" are playlists of their own; "1" and "2" stay apart.
    assert result.transactions.playlists == 4
    tx = result.transactions
    assert dict(zip(tx.song_names, tx.song_counts.tolist(), strict=True)) == {"a": 2, "d": 2}


def test_names_are_kept_exactly_as_written(tmp_path: Path) -> None:
    composed, decomposed = "Beyoncé", "Beyonce\u0301"
    path = tmp_path / "p.csv"
    path.write_text(f"pid,track_name\n1,{composed}\n1,{decomposed}\n1, padded \n", "utf-8")
    assert set(read_playlists(path).transactions.song_names) == {composed, decomposed, " padded "}


def test_synth_ds1_shape() -> None:
    result = read_playlists(DATA / "synth_ds1.csv.xz")
    tx = result.transactions
    assert (result.rows, result.skipped_rows) == (245_656, 0)
    assert (tx.playlists, len(tx.song_names)) == (2_300, 5_340)
    assert int(tx.song_counts.sum()) == len(tx.indices)
    assert np.array_equal(np.bincount(tx.indices, minlength=len(tx.song_names)), tx.song_counts)


def test_build_transactions_matches_a_set_per_playlist() -> None:
    rng = random.Random(7)
    names = [f"song {i}" for i in range(30)]
    pairs = [(rng.randrange(1000, 1040), rng.randrange(30)) for _ in range(600)]
    tx = build_transactions([p for p, _ in pairs], [s for _, s in pairs], names)
    expected: dict[int, set[str]] = {}
    for p, s in pairs:
        expected.setdefault(p, set()).add(names[s])
    assert sorted(map(sorted, playlists_by_name(tx))) == sorted(map(sorted, expected.values()))


@pytest.mark.parametrize(
    ("content", "message"),
    [(content, message) for _, content, message in BAD_INPUTS],
    ids=[name for name, _, _ in BAD_INPUTS],
)
def test_bad_input_is_one_line_naming_the_problem(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    with pytest.raises(MiningInputError) as caught:
        read_playlists(path)
    text = str(caught.value)
    assert message in text
    assert text.startswith(str(path))
    assert "\n" not in text


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(MiningInputError, match="no such file"):
        read_playlists(tmp_path / "nope.csv")
