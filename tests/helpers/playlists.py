"""Playlists whose itemsets explode: long playlists sharing long runs of songs, as real ones do.

Two playlists that share a run of r songs make every subset of the run frequent at a
support of 2 playlists: Σ C(r, k) itemsets up to MAX_LEN songs (10^8 for r = 40 and
MAX_LEN 8), while the pairs alone stay few. That is what made the 500-playlist course
sample grow without bound at MIN_SUPPORT=0.004 and MAX_LEN=8.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from mining.reader import PlaylistRows


def shared_runs(
    pairs: int, run: int, noise: int, pool: int = 300, seed: int = 1
) -> list[list[str]]:
    """``2 * pairs`` playlists: each pair shares ``run`` songs of its own, plus ``noise`` songs
    drawn from a pool of ``pool``."""
    rng = random.Random(seed)
    playlists = []
    for pair in range(pairs):
        for _ in range(2):
            songs = [f"Run {pair}, song {i}" for i in range(run)]
            songs += [f"Noise {rng.randrange(pool)}" for _ in range(noise)]
            playlists.append(songs)
    return playlists


def write_playlists_csv(path: Path, playlists: list[list[str]]) -> Path:
    """Write playlists as ``pid,track_name`` rows (names quoted: they hold commas)."""
    lines = ["pid,track_name"]
    for pid, songs in enumerate(playlists):
        lines.extend(f'{pid},"{song}"' for song in songs)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def playlist_rows(playlists: list[list[str]]) -> PlaylistRows:
    """Rows in file order, one per (playlist, song), codes by first appearance."""
    names: dict[str, int] = {}
    pids, songs = [], []
    for pid, playlist in enumerate(playlists):
        for song in playlist:
            pids.append(pid)
            songs.append(names.setdefault(song, len(names)))
    return PlaylistRows(
        np.array(pids, dtype=np.int64), np.array(songs, dtype=np.int64), list(names), len(pids), 0
    )
