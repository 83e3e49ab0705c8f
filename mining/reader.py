"""Playlists CSV → transactions (the distinct songs of each playlist) as a sparse incidence matrix.

pyarrow parses the CSV (RFC 4180 quoting) block by block and the job keeps only the two
columns it needs, so a 240k-row file costs a fraction of a second and no Python object
per row is ever created. Each block is checked on the way: a value whose later lines hold
commas (what an unbalanced quote makes of the rows after it) is refused, and the CSV text
read after decompression is bounded, so a small compressed file cannot expand without end.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import lzma
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mining.errors import MiningInputError
from mining.quoting import clean, column_list, excerpt
from mining.sizes import format_size
from mining.transactions import PlaylistFile, build_transactions

PLAYLIST_COLUMN = "pid"
SONG_COLUMN = "track_name"
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
# Enough decompressed bytes to tell text from binary and to hold any sane header line.
SNIFF_BYTES = 64 * 1024
MAX_MESSAGE = 200
_ONE_THREAD = pacsv.ReadOptions(use_threads=False)
# pyarrow quotes the whole offending row after "got N"; a message shows a short excerpt.
_ROW_IN_MESSAGE = re.compile(r"(.*?Expected \d+ columns?, got \d+): (.*)", re.DOTALL)

I64 = npt.NDArray[np.int64]


def _magic(path: Path) -> bytes:
    with open(path, "rb") as probe:
        return probe.read(len(XZ_MAGIC))


def _compressed(path: Path) -> bool:
    magic = _magic(path)
    return magic.startswith(GZIP_MAGIC) or magic.startswith(XZ_MAGIC)


@contextlib.contextmanager
def _open_decompressed(path: Path) -> Iterator[IO[bytes] | Any]:
    """Open ``path`` for reading, decompressing gzip or xz (recognised by content, not name)."""
    magic = _magic(path)
    if magic.startswith(GZIP_MAGIC):
        with pa.CompressedInputStream(pa.OSFile(str(path)), "gzip") as stream:
            yield stream
    elif magic.startswith(XZ_MAGIC):
        # pyarrow has no xz codec; the stdlib decompresses as pyarrow pulls blocks.
        with lzma.open(path, "rb") as stream:
            yield stream
    else:
        with pa.OSFile(str(path)) as stream:
            yield stream


class _LimitReachedError(Exception):
    """The CSV text goes on past the input limit."""


class _BoundedInput(io.RawIOBase):
    """Hands pyarrow the bytes of ``stream``, at most ``limit`` of them (then raises)."""

    def __init__(self, stream: Any, limit: int | None) -> None:
        super().__init__()
        self._stream = stream
        self._limit = limit
        self.consumed = 0

    def readable(self) -> bool:
        """Always: this is an input."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the stream without passing the limit."""
        view = memoryview(buffer).cast("B")
        if self._limit is not None:
            room = self._limit - self.consumed
            if room <= 0:
                # One byte more tells an input of exactly the limit from a larger one.
                if self._stream.read(1):
                    raise _LimitReachedError
                return 0
            view = view[:room]
        data = self._stream.read(len(view))
        view[: len(data)] = data
        self.consumed += len(data)
        return len(data)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if match := _ROW_IN_MESSAGE.match(text):
        return f"{match.group(1)} (in a row starting {excerpt(match.group(2))})"
    lines = text.splitlines()
    return clean(lines[0] if lines else type(exc).__name__, MAX_MESSAGE)


def check_text(path: Path) -> None:
    """Refuse empty, binary and corrupt files before a CSV parser makes puzzling messages."""
    try:
        with _open_decompressed(path) as stream:
            head = stream.read(SNIFF_BYTES)
    except (pa.ArrowException, lzma.LZMAError, EOFError, OSError) as exc:
        if isinstance(exc, MemoryError):
            raise
        raise MiningInputError(f"{path}: not readable as CSV: {_describe(exc)}") from exc
    if not head:
        raise MiningInputError(f"{path}: the file is empty")
    if b"\0" in head:
        raise MiningInputError(f"{path}: not a CSV text file (binary content)")
    try:
        # final=False: the sniffed block may end inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        raise MiningInputError(f"{path}: not a CSV text file (not UTF-8)") from None
    if len(head) == SNIFF_BYTES and b"\n" not in head and b"\r" not in head:
        raise MiningInputError(
            f"{path}: the first line, the CSV header, is longer than {SNIFF_BYTES} bytes "
            "(a playlists CSV header names a few columns)"
        )


def _header(path: Path) -> list[str]:
    with _open_decompressed(path) as stream:
        reader = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=SNIFF_BYTES))
        return list(reader.schema.names)


def _swallowing_row(batch: pa.RecordBatch) -> tuple[int, str] | None:
    """The first (row, column) of ``batch`` whose value looks like it swallowed rows, if any.

    RFC 4180 lets a quoted value span lines. A value one of whose later lines holds the
    delimiter is taken for what an unbalanced quote makes: the rows after it, joined into it.
    """
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        _, offsets, data = column.buffers()
        if data is None:
            continue
        ends = np.frombuffer(offsets, dtype=np.int32)[
            column.offset : column.offset + len(column) + 1
        ]
        text = np.frombuffer(data, dtype=np.uint8)[ends[0] : ends[-1]]
        # A cheap scan of the block's bytes first: line breaks in values are rare.
        if bool(np.any((text == ord("\n")) | (text == ord("\r")))):
            hits = pc.match_substring_regex(column, "[\r\n][^\r\n]*,")
            if pc.any(hits).as_py():
                return int(pc.index(hits, True).as_py()), name
    return None


def _read_columns(
    path: Path, columns: list[str], max_bytes: int | None
) -> tuple[pa.StringArray, pa.StringArray]:
    """The pid and track_name columns, read block by block, every row checked to be one line."""
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(columns, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    # Only these two columns are kept; the others live for one block.
    pids: list[pa.Array] = []
    tracks: list[pa.Array] = []
    with _open_decompressed(path) as stream:
        bounded = _BoundedInput(stream, max_bytes)
        try:
            # One thread: the blocks are checked one by one anyway, and a reader that fails
            # (out of memory) leaves no worker thread behind to abort the interpreter's exit.
            reader = pacsv.open_csv(bounded, read_options=_ONE_THREAD, convert_options=convert)
            for batch in reader:
                if found := _swallowing_row(batch):
                    row, column = found
                    raise MiningInputError(
                        f"{path}: row {sum(map(len, pids)) + row + 1} after the header: its "
                        f"{clean(column, 40)!r} value spans lines and holds commas, the rows "
                        'after an unbalanced quote ("); fix the quoting (a value may span lines '
                        "only between balanced quotes)"
                    )
                pids.append(batch.column(PLAYLIST_COLUMN))
                tracks.append(batch.column(SONG_COLUMN))
        except _LimitReachedError:
            raise MiningInputError(
                f"{path}: more than {format_size(bounded.consumed)} of CSV text (after "
                "decompression), the input limit: raise MAX_INPUT_SIZE if the dataset is "
                "really that large"
            ) from None
    return (
        pa.chunked_array(pids, pa.string()).combine_chunks(),
        pa.chunked_array(tracks, pa.string()).combine_chunks(),
    )


def require_columns(shown: str, columns: Sequence[str]) -> None:
    """Refuse a header without the pid and track_name columns (exact names, any position)."""
    missing = [c for c in (PLAYLIST_COLUMN, SONG_COLUMN) if c not in columns]
    if missing:
        raise MiningInputError(
            f"{shown}: no {' and no '.join(repr(c) for c in missing)} column in the header "
            f"(found {column_list(columns)})"
        )


@dataclass(frozen=True, eq=False)
class PlaylistRows:
    """The valid rows of a dataset in file order: ``names[song_codes[i]]`` is in playlist
    ``playlist_codes[i]`` (codes number pids and names in order of first appearance)."""

    playlist_codes: I64
    song_codes: I64
    names: list[str]
    rows: int
    skipped_rows: int


def read_playlists(path: Path, max_bytes: int | None = None) -> PlaylistFile:
    """Read a playlists CSV (plain, gzip or xz); raise MiningInputError naming what is wrong.

    ``max_bytes`` bounds the CSV text read (after decompression); None: no bound.
    """
    found = read_playlist_rows(path, max_bytes)
    transactions = build_transactions(found.playlist_codes, found.song_codes, found.names)
    return PlaylistFile(transactions=transactions, rows=found.rows, skipped_rows=found.skipped_rows)


def read_playlist_rows(path: Path, max_bytes: int | None = None) -> PlaylistRows:
    """The valid rows of a playlists CSV in file order (the evaluation's seeds need that order)."""
    path = Path(path)
    if not path.is_file():
        raise MiningInputError(f"{path}: no such file")
    try:
        return _read_playlists(path, max_bytes)
    except MemoryError:
        # pyarrow's ArrowMemoryError is a MemoryError too: one line, never a traceback.
        limit = "" if max_bytes is None else f" (the input limit is {format_size(max_bytes)})"
        raise MiningInputError(
            f"{path}: not enough memory to read the dataset{limit}: lower MAX_INPUT_SIZE to "
            "refuse such inputs early, or give the job more memory"
        ) from None


def _read_playlists(path: Path, max_bytes: int | None) -> PlaylistRows:
    if max_bytes is not None and path.stat().st_size > max_bytes and not _compressed(path):
        raise MiningInputError(
            f"{path}: {path.stat().st_size} bytes of CSV text, more than the input limit of "
            f"{format_size(max_bytes)}: raise MAX_INPUT_SIZE if the dataset is really that large"
        )
    try:
        check_text(path)
        columns = _header(path)
        require_columns(str(path), columns)
        pids, tracks = _read_columns(path, columns, max_bytes)
    except MiningInputError:
        raise
    except (pa.ArrowException, lzma.LZMAError, EOFError, OSError) as exc:
        if isinstance(exc, MemoryError):
            raise
        raise MiningInputError(f"{path}: not readable as CSV: {_describe(exc)}") from exc
    valid = pc.and_(
        pc.not_equal(pc.utf8_trim_whitespace(pids), ""),
        pc.not_equal(pc.utf8_trim_whitespace(tracks), ""),
    )
    rows = len(pids)
    kept = int(pc.sum(valid).as_py() or 0)
    if kept == 0:
        raise MiningInputError(
            f"{path}: no rows with both a {PLAYLIST_COLUMN} and a {SONG_COLUMN} ({rows} data rows)"
        )
    pid_codes = pc.filter(pids, valid).dictionary_encode()
    song_codes = pc.filter(tracks, valid).dictionary_encode()
    return PlaylistRows(
        playlist_codes=pid_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        song_codes=song_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        names=song_codes.dictionary.to_pylist(),
        rows=rows,
        skipped_rows=rows - kept,
    )
