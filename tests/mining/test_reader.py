"""Reading playlists: RFC 4180 CSV in either header shape, compressed or not, with clear errors."""

from __future__ import annotations

import gzip
import lzma
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mining.errors import MiningInputError
from mining.reader import read_playlists
from mining.transactions import Transactions, build_transactions
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
def test_compressed_files_read_like_plain_ones(
    tmp_path: Path, name: str, compress: Callable[[bytes], bytes]
) -> None:
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


# -- unbalanced quotes: never a silent merge of rows -------------------------------------------

NINE_ROWS = "pid,track_name\n1,a\n1,b\n2,c\n2,d\n3,e\n3,f\n4,g\n4,h\n5,i\n"


@pytest.mark.parametrize(
    ("text", "row", "column"),
    [
        # The quote opens in the last column and closes four lines later: 9 rows read as 5.
        (NINE_ROWS.replace("1,b", '1,"b').replace("3,f", '3,f"x'), 2, "track_name"),
        # Two unbalanced quotes in a column that is not read, with the field count intact.
        (
            "track_uri,album_name,pid,track_name\n"
            'u1,Album,1,a\nu2,"Heroes,1,b\nu3,Album,1,c\nu4,Mono",2,d\nu5,Album,2,e\n',
            2,
            "album_name",
        ),
    ],
    ids=["last-column", "unread-column"],
)
def test_an_unbalanced_quote_is_refused_naming_its_row(
    tmp_path: Path, text: str, row: int, column: str
) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(text)
    with pytest.raises(MiningInputError) as caught:
        read_playlists(path)
    message = str(caught.value)
    assert f"row {row} after the header: its '{column}' value spans lines" in message
    assert "unbalanced quote" in message


def test_an_unbalanced_quote_is_found_in_a_later_block(tmp_path: Path) -> None:
    rows = [f"{p},a song with a longer name {p % 97}" for p in range(100_000)]
    rows[90_000] = '90000,"song'
    path = tmp_path / "long.csv"
    path.write_text("pid,track_name\n" + "\n".join(rows) + "\n")
    assert path.stat().st_size > 2 * 1024**2  # more than one block of pyarrow's reader
    with pytest.raises(MiningInputError, match="row 90001 after the header"):
        read_playlists(path)


# -- what a message may quote of the input ------------------------------------------------------

SHADOW = (
    "root:$6$Jx8e3Lm0$Qw3rTy7uI9oPaSdFgHjKlZxCvBnM1234567890abcdefghijklmnop:19700:0:99999:7:::\n"
    "daemon:*:19700:0:99999:7:::\n"
)


def test_a_file_that_is_not_a_playlists_csv_is_not_quoted(tmp_path: Path) -> None:
    path = tmp_path / "shadow"
    path.write_text(SHADOW)
    with pytest.raises(MiningInputError) as caught:
        read_playlists(path)
    message = str(caught.value).removeprefix(str(path))
    assert "no 'pid' and no 'track_name' column" in message
    assert "found 1 column, none named like a CSV column" in message
    for secret in ("$6$", "Jx8e3Lm0", "Qw3rTy", "root"):
        assert secret not in message


def test_the_list_of_columns_found_is_short(tmp_path: Path) -> None:
    names = [f"column_{i}" for i in range(500)] + ["x" * 10_000, "a:b$c"]
    path = tmp_path / "wide.csv"
    path.write_text(",".join(names) + "\n" + ",".join("1" * len(names)) + "\n")
    with pytest.raises(MiningInputError) as caught:
        read_playlists(path)
    message = str(caught.value)
    assert "found 502 columns: column_0, column_1, column_2, column_3, column_4, column_5, " in (
        message
    )
    assert "column_7 and 494 not shown" in message
    assert len(message) < len(str(path)) + 250


def test_a_ragged_row_is_quoted_short_and_sanitised(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("pid,track_name\n1,a\n2,b,\x1b[2Jpassword=" + "hunter2" * 100 + "\n")
    with pytest.raises(MiningInputError) as caught:
        read_playlists(path)
    message = str(caught.value)
    # 24 characters of the row at most, the terminal escape made visible.
    assert "Expected 2 columns, got 3 (in a row starting '2,b,\\x1b[2Jpassword=hunter2…')" in (
        message
    )
    assert "\x1b" not in message and "hunter2hunter2" not in message


def test_a_long_header_line_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("pid,track_name," + ",".join(f"c{i}" for i in range(40_000)) + "\n1,a\n")
    with pytest.raises(MiningInputError, match="the first line, the CSV header, is longer than"):
        read_playlists(path)


# -- the input limit: the CSV text read, after decompression -----------------------------------


def test_compressed_input_stops_at_the_limit(tmp_path: Path) -> None:
    rows = b"pid,track_name\n" + b"".join(
        b"%d,song %d\n" % (p // 20, p % 300) for p in range(150_000)
    )
    gz, xz = tmp_path / "rows.csv.gz", tmp_path / "rows.csv.xz"
    gz.write_bytes(gzip.compress(rows))
    xz.write_bytes(lzma.compress(rows, preset=0))
    for path in (gz, xz):
        with pytest.raises(
            MiningInputError, match=r"more than 1 MiB of CSV text .* MAX_INPUT_SIZE"
        ):
            read_playlists(path, max_bytes=1024**2)
        # Exactly at the limit is within it.
        assert read_playlists(path, max_bytes=len(rows)).rows == 150_000


def test_a_plain_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with open(path, "wb") as f:
        f.write(b"pid,track_name\n")
        f.truncate(8 * 1024**3)  # sparse: reading it would take minutes
    with pytest.raises(MiningInputError, match=r"8589934592 bytes of CSV text, more than"):
        read_playlists(path, max_bytes=512 * 1024**2)
