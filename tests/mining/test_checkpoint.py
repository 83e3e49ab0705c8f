"""The checkpoint line: exact format, URL normalisation, model date, atomic write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mining.checkpoint import (
    Checkpoint,
    CheckpointError,
    format_model_date,
    normalise_dataset_url,
    parse_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from tests.helpers.processes import run_python


def test_written_line_is_exactly_the_original_format(tmp_path: Path) -> None:
    path = tmp_path / "ml_processor_checkpoint.txt"
    cp = Checkpoint("0.1.0", "https://example.org/ds1.csv", 1_700_000_000_123_456_789)
    write_checkpoint(path, cp)
    assert path.read_text() == "0.1.0 https://example.org/ds1.csv 1700000000123456789\n"
    assert read_checkpoint(path) == cp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml_processor_checkpoint.txt"]


def test_model_date_is_utc_with_microseconds() -> None:
    assert format_model_date(1_700_000_000_123_456_789) == "2023-11-14 22:13:20.123456"
    assert format_model_date(0) == "1970-01-01 00:00:00.000000"


def test_plain_path_becomes_percent_encoded_file_url(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    url = normalise_dataset_url("my playlists, 2023.csv")
    assert url == (tmp_path / "my playlists, 2023.csv").as_uri()
    assert " " not in url and url.startswith("file:///")
    assert normalise_dataset_url("https://h/x.csv") == "https://h/x.csv"
    assert normalise_dataset_url("https://h/a b.csv") == "https://h/a%20b.csv"
    assert len(Checkpoint("1", url, 5).to_line().split(" ")) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "exactly one line"),
        ("1 2\n", "found 2 fields"),
        ("1 url 12 extra\n", "found 4 fields"),
        ("1 url 12\n2 url 13\n", "exactly one line"),
        ("1 url soon\n", "not an integer"),
        ("1 url -5\n", "not an integer"),
        ("1  12\n", "fields"),
    ],
)
def test_garbage_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint(text)


def test_unreadable_and_binary_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe 1 2\n")
    with pytest.raises(CheckpointError, match="not UTF-8"):
        read_checkpoint(tmp_path / "bin.txt")
    (tmp_path / "big.txt").write_bytes(b"1" * 100_000)
    with pytest.raises(CheckpointError, match="larger than"):
        read_checkpoint(tmp_path / "big.txt")


def test_a_url_with_a_space_cannot_be_written(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="found 4 fields"):
        write_checkpoint(tmp_path / "cp.txt", Checkpoint("1", "file:///a b", 5))
    assert not (tmp_path / "cp.txt").exists()


def test_a_fifo_or_a_device_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.txt")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    # In a child with a timeout: a blocking open() would hang the test run, not fail it.
    code = f"""
from mining.checkpoint import read_checkpoint, CheckpointError
for name in ("fifo.txt", "zero.txt"):
    try:
        read_checkpoint({str(tmp_path)!r} + "/" + name)
    except CheckpointError as exc:
        print(exc)
"""
    result = run_python(code, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"cannot read checkpoint {tmp_path}/fifo.txt: a FIFO, not a regular file",
        f"cannot read checkpoint {tmp_path}/zero.txt: a character device, not a regular file",
    ]


def test_a_bad_generation_time_is_quoted_short_and_sanitised() -> None:
    with pytest.raises(CheckpointError) as raised:
        parse_checkpoint("1.0 file:///x \x1b[31m" + "9" * 500 + "\n")
    message = str(raised.value)
    assert "\x1b" not in message and "\\x1b[31m" in message
    assert len(message) < 100
