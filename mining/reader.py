"""Playlists CSV → transactions (the distinct songs of each playlist) as a sparse incidence matrix.

pyarrow parses the CSV (RFC 4180 quoting, multi-threaded) and reads only the
two columns the job needs, so a 240k-row file costs a fraction of a second and
no Python object per row is ever created.
"""

from __future__ import annotations

import codecs
import contextlib
import lzma
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

PLAYLIST_COLUMN = "pid"
SONG_COLUMN = "track_name"
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
# Enough decompressed bytes to tell text from binary and to hold any sane header line.
SNIFF_BYTES = 64 * 1024
MAX_MESSAGE = 200

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Transactions:
    """Playlists over a song table, as a CSR incidence matrix.

    Song ids number the songs by descending playlist count, then name, so the
    same data always gives the same ids and the songs frequent at any support
    are a prefix ``0..k-1``. Playlist ``p`` holds the song ids
    ``indices[indptr[p]:indptr[p+1]]``, ascending and distinct.
    """

    song_names: tuple[str, ...]
    song_counts: I64
    indptr: I64
    indices: I64

    @property
    def playlists(self) -> int:
        """Number of transactions (playlists with at least one valid row)."""
        return len(self.indptr) - 1

    def playlist(self, p: int) -> I64:
        """The song ids of playlist ``p``."""
        return self.indices[self.indptr[p] : self.indptr[p + 1]]


@dataclass(frozen=True)
class PlaylistFile:
    """What was read from a dataset file."""

    transactions: Transactions
    rows: int
    skipped_rows: int


def build_transactions(
    playlist_codes: npt.ArrayLike, song_codes: npt.ArrayLike, names: Sequence[str]
) -> Transactions:
    """Build transactions from parallel (playlist, song) code arrays; ``names[code]`` is the song.

    Playlist codes are any non-negative integers; duplicates (a song twice in a
    playlist) count once. Names that occur in no row are left out of the song table.
    """
    playlists = np.asarray(playlist_codes, dtype=np.int64)
    songs = np.asarray(song_codes, dtype=np.int64)
    width = max(len(names), 1)
    pairs = np.unique(playlists * width + songs)
    pair_playlists, pair_songs = np.divmod(pairs, width)
    counts = np.bincount(pair_songs, minlength=len(names))
    count_of = counts.tolist()
    order = sorted(
        (code for code in range(len(names)) if count_of[code]),
        key=lambda code: (-count_of[code], names[code]),
    )
    new_id = np.full(len(names), -1, dtype=np.int64)
    new_id[order] = np.arange(len(order), dtype=np.int64)
    ids = new_id[pair_songs]
    # Dense playlist numbers in order of first appearance of the (sorted) codes.
    _, playlist_index = np.unique(pair_playlists, return_inverse=True)
    n_playlists = int(playlist_index.max()) + 1 if len(playlist_index) else 0
    by_playlist_then_song = np.lexsort((ids, playlist_index))
    indices = ids[by_playlist_then_song]
    indptr = np.zeros(n_playlists + 1, dtype=np.int64)
    np.cumsum(np.bincount(playlist_index, minlength=n_playlists), out=indptr[1:])
    return Transactions(
        song_names=tuple(names[code] for code in order),
        song_counts=counts[order].astype(np.int64),
        indptr=indptr,
        indices=indices.astype(np.int64),
    )


@contextlib.contextmanager
def _open_decompressed(path: Path) -> Iterator[IO[bytes] | Any]:
    """Open ``path`` for reading, decompressing gzip or xz (recognised by content, not name)."""
    with open(path, "rb") as probe:
        magic = probe.read(len(XZ_MAGIC))
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


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def _check_text(path: Path) -> None:
    """Refuse empty and binary files before pyarrow turns them into puzzling messages."""
    with _open_decompressed(path) as stream:
        head = stream.read(SNIFF_BYTES)
    if not head:
        raise MiningInputError(f"{path}: the file is empty")
    if b"\0" in head:
        raise MiningInputError(f"{path}: not a CSV text file (binary content)")
    try:
        # final=False: the sniffed block may end inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        raise MiningInputError(f"{path}: not a CSV text file (not UTF-8)") from None


def _header(path: Path) -> list[str]:
    with _open_decompressed(path) as stream:
        reader = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=SNIFF_BYTES))
        return list(reader.schema.names)


def _read_columns(path: Path) -> pa.Table:
    convert = pacsv.ConvertOptions(
        include_columns=[PLAYLIST_COLUMN, SONG_COLUMN],
        column_types={PLAYLIST_COLUMN: pa.string(), SONG_COLUMN: pa.string()},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    with _open_decompressed(path) as stream:
        return pacsv.read_csv(stream, convert_options=convert)


@dataclass(frozen=True, eq=False)
class PlaylistRows:
    """The valid rows of a dataset in file order: ``names[song_codes[i]]`` is in playlist
    ``playlist_codes[i]`` (codes number pids and names in order of first appearance)."""

    playlist_codes: I64
    song_codes: I64
    names: list[str]
    rows: int
    skipped_rows: int


def read_playlists(path: Path) -> PlaylistFile:
    """Read a playlists CSV (plain, gzip or xz); raise MiningInputError naming what is wrong."""
    found = read_playlist_rows(path)
    transactions = build_transactions(found.playlist_codes, found.song_codes, found.names)
    return PlaylistFile(transactions=transactions, rows=found.rows, skipped_rows=found.skipped_rows)


def read_playlist_rows(path: Path) -> PlaylistRows:
    """The valid rows of a playlists CSV in file order (the evaluation's seeds need that order)."""
    path = Path(path)
    if not path.is_file():
        raise MiningInputError(f"{path}: no such file")
    try:
        _check_text(path)
        columns = _header(path)
        missing = [c for c in (PLAYLIST_COLUMN, SONG_COLUMN) if c not in columns]
        if missing:
            raise MiningInputError(
                f"{path}: no {' and no '.join(repr(c) for c in missing)} column in the header "
                f"(found: {', '.join(columns[:12])}{', …' if len(columns) > 12 else ''})"
            )
        table = _read_columns(path)
    except MiningInputError:
        raise
    except (pa.ArrowException, lzma.LZMAError, EOFError, OSError) as exc:
        raise MiningInputError(f"{path}: not readable as CSV: {_describe(exc)}") from exc
    pids = table.column(PLAYLIST_COLUMN).combine_chunks()
    tracks = table.column(SONG_COLUMN).combine_chunks()
    valid = pc.and_(
        pc.not_equal(pc.utf8_trim_whitespace(pids), ""),
        pc.not_equal(pc.utf8_trim_whitespace(tracks), ""),
    )
    rows = table.num_rows
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
