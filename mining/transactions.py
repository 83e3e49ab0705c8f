"""Transactions: the distinct songs of each playlist as a sparse incidence matrix, built from
(playlist, song) codes; what every engine mines and the evaluation splits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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


def read_summary(found: PlaylistFile, seconds: float) -> str:
    """The job's log line for what was read in ``seconds``."""
    tx = found.transactions
    return (
        f"read: {found.rows} rows ({found.skipped_rows} skipped: empty pid or track_name), "
        f"{tx.playlists} playlists, {len(tx.song_names)} songs, in {seconds:.2f} s"
    )


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
