"""Seeded generator of the bundled sample playlists (``python -m mining.samplegen``).

The playlists are synthetic, built from the real song list in
``mining/data/spotify-songs/``: song popularity follows a Zipf-like law and
"themes" (groups of songs that are put into playlists together) give the data
real co-listening structure, so association rules exist to be mined. Album
names, URIs and durations are invented: the URIs are derived from a hash of the
names, so each song, artist and album keeps one stable URI.

Only ``random.Random.random()`` is used for randomness: its sequence for a
given integer seed is the one part of the ``random`` module Python promises to
keep across versions, so the same command writes the same CSV everywhere.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import hashlib
import io
import itertools
import math
import os
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SONGS_CSV = Path(__file__).with_name("data") / "spotify-songs" / "2023_spotify_songs.csv"
HEADER = (
    "track_uri",
    "album_name",
    "album_uri",
    "artist_name",
    "artist_uri",
    "duration_ms",
    "pid",
    "track_name",
)
# Spotify IDs are 22 characters long; ours are 22 hex digits, which compress better than
# base 62 and keep the bundled file under its size budget.
_URI_ID_LENGTH = 22
# A theme of one song would be no theme: it gives no rule.
MIN_THEME_SONGS = 2
# Album names, some with a comma or double quotes so that readers must honour RFC-4180 quoting.
_ALBUM_TEMPLATES = (
    "{artist}",
    "{artist} (Deluxe Edition)",
    "Singles, B-Sides and Rarities",
    'Live from "The Basement"',
    "Essentials: {artist}",
)


@dataclass(frozen=True)
class Song:
    """One (artist, track) pair of the song list."""

    artist: str
    track: str


@dataclass(frozen=True)
class SampleSpec:
    """The knobs of the generator; the defaults produce the bundled sample."""

    seed: int = 1
    playlists: int = 900
    min_tracks: int = 5
    max_tracks: int = 80
    mean_background_tracks: float = 8.0
    zipf_exponent: float = 0.6
    themes: int = 50
    theme_min_songs: int = 3
    theme_max_songs: int = 8
    theme_min_share: float = 0.02
    theme_max_share: float = 0.08
    theme_min_inclusion: float = 0.7
    theme_max_inclusion: float = 0.9

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent knob."""
        checks = (
            (self.playlists >= 1, "playlists must be >= 1"),
            (1 <= self.min_tracks <= self.max_tracks, "need 1 <= min_tracks <= max_tracks"),
            (self.mean_background_tracks >= 0, "mean_background_tracks must be >= 0"),
            (self.zipf_exponent >= 0, "zipf_exponent must be >= 0"),
            (self.themes >= 0, "themes must be >= 0"),
            (
                MIN_THEME_SONGS <= self.theme_min_songs <= self.theme_max_songs,
                f"need {MIN_THEME_SONGS} <= theme_min_songs <= theme_max_songs",
            ),
            (
                0 < self.theme_min_share <= self.theme_max_share <= 1,
                "need 0 < theme_min_share <= theme_max_share <= 1",
            ),
            (
                0 < self.theme_min_inclusion <= self.theme_max_inclusion <= 1,
                "need 0 < theme_min_inclusion <= theme_max_inclusion <= 1",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass(frozen=True)
class _Theme:
    """Songs put into a playlist together: chosen with ``share``, each member with ``inclusion``."""

    members: tuple[int, ...]
    share: float
    inclusion: float


def load_songs(path: Path = SONGS_CSV) -> list[Song]:
    """Read the ``artist_name,track_name`` song list, in file order."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return [Song(artist=row["artist_name"], track=row["track_name"]) for row in reader]


class _Draws:
    """Every random decision of the generator, built on ``random()`` alone (see the module doc)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._rng.random()

    def below(self, n: int) -> int:
        """An integer in ``[0, n)``."""
        return min(int(self._rng.random() * n), n - 1)

    def chance(self, p: float) -> bool:
        return self._rng.random() < p

    def shuffled(self, items: Sequence[int]) -> list[int]:
        """Fisher-Yates shuffle of a copy."""
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def weighted_index(self, cumulative: Sequence[float]) -> int:
        """An index drawn with probability proportional to its weight (cumulative sums given)."""
        return bisect.bisect_right(cumulative, self._rng.random() * cumulative[-1])

    def geometric_count(self, mean: float) -> int:
        """A count >= 0 with the given mean, long-tailed like real playlist lengths."""
        if mean <= 0:
            return 0
        u = 1.0 - self._rng.random()  # in (0, 1], so the log is finite
        return int(-math.log(u) * mean)


def _uri(kind: str, *names: str) -> str:
    digest = hashlib.sha1("\x1f".join((kind, *names)).encode("utf-8")).hexdigest()
    return f"spotify:{kind}:{digest[:_URI_ID_LENGTH]}"


def _name_hash(*names: str) -> int:
    return int.from_bytes(hashlib.sha1("\x1f".join(names).encode("utf-8")).digest()[:8], "big")


def _song_row_fields(song: Song) -> tuple[str, str, str, str, str, str]:
    """The columns that depend only on the song: every column but ``pid`` and ``track_name``."""
    h = _name_hash("song", song.artist, song.track)
    # Each artist has 1..3 albums; a song lands on one of them.
    albums_of_artist = 1 + _name_hash("albums", song.artist) % 3
    template_index = (_name_hash("album", song.artist) + h % albums_of_artist) % len(
        _ALBUM_TEMPLATES
    )
    album = _ALBUM_TEMPLATES[template_index].format(artist=song.artist)
    # 1:30 .. 6:00, the usual range of a pop song.
    duration_ms = 90_000 + h % 270_000
    return (
        _uri("track", song.artist, song.track),
        album,
        _uri("album", song.artist, album),
        song.artist,
        _uri("artist", song.artist),
        str(duration_ms),
    )


def _make_themes(spec: SampleSpec, draws: _Draws, cumulative: Sequence[float]) -> list[_Theme]:
    themes = []
    for _ in range(spec.themes):
        size = spec.theme_min_songs + draws.below(spec.theme_max_songs - spec.theme_min_songs + 1)
        members: set[int] = set()
        while len(members) < size:
            members.add(draws.weighted_index(cumulative))
        themes.append(
            _Theme(
                members=tuple(sorted(members)),
                share=draws.uniform(spec.theme_min_share, spec.theme_max_share),
                inclusion=draws.uniform(spec.theme_min_inclusion, spec.theme_max_inclusion),
            )
        )
    return themes


def _check_fits(spec: SampleSpec, songs: Sequence[Song]) -> None:
    spec.validate()
    if max(spec.max_tracks, spec.theme_max_songs) > len(songs):
        # Playlists and themes hold distinct songs; asking for more than exist would never end.
        raise ValueError(f"the song list has only {len(songs)} songs")


def generate_playlists(spec: SampleSpec, songs: Sequence[Song]) -> Iterator[list[int]]:
    """Yield each playlist as a list of distinct song indices, in playlist order."""
    _check_fits(spec, songs)
    draws = _Draws(spec.seed)
    popularity_order = draws.shuffled(range(len(songs)))
    weights = [0.0] * len(songs)
    for rank, index in enumerate(popularity_order):
        weights[index] = 1.0 / (rank + 1) ** spec.zipf_exponent
    cumulative = list(itertools.accumulate(weights))
    themes = _make_themes(spec, draws, cumulative)
    for _ in range(spec.playlists):
        chosen: dict[int, None] = {}  # insertion-ordered set
        for theme in themes:
            if draws.chance(theme.share):
                for member in theme.members:
                    if draws.chance(theme.inclusion):
                        chosen[member] = None
        # Background songs come on top of the themes; the floor and ceiling bound the total.
        length = len(chosen) + draws.geometric_count(spec.mean_background_tracks)
        length = min(max(length, spec.min_tracks), spec.max_tracks)
        while len(chosen) < length:
            chosen[draws.weighted_index(cumulative)] = None
        yield draws.shuffled(list(chosen))[: spec.max_tracks]


def write_csv(spec: SampleSpec, songs: Sequence[Song], out: io.TextIOBase) -> int:
    """Write the playlists CSV (RFC-4180 quoting); return the number of data rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    fields = [_song_row_fields(song) for song in songs]
    rows = 0
    for pid, playlist in enumerate(generate_playlists(spec, songs)):
        for index in playlist:
            writer.writerow((*fields[index], pid, songs[index].track))
            rows += 1
    return rows


def write_sample(spec: SampleSpec, output: Path, songs_csv: Path = SONGS_CSV) -> int:
    """Write the sample to ``output`` (gzip if it ends in ``.gz``); return the number of rows.

    Playlists are written as they are drawn, so a million need no more memory than ten
    (~25 MiB). They go to ``output.partial`` first, renamed when complete: an interrupted
    run never leaves a truncated file under the name asked for. The gzip header carries
    no file name and mtime 0, so the bytes depend only on the content.
    """
    songs = load_songs(songs_csv)
    # Refuse bad knobs before creating the output file.
    _check_fits(spec, songs)
    partial = output.with_name(output.name + ".partial")
    try:
        with open(partial, "wb") as raw:
            if output.name.endswith(".gz"):
                with (
                    gzip.GzipFile(
                        fileobj=raw, mode="wb", filename="", mtime=0, compresslevel=9
                    ) as gz,
                    io.TextIOWrapper(gz, encoding="utf-8", newline="") as text,
                ):
                    rows = write_csv(spec, songs, text)
            else:
                with io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
                    rows = write_csv(spec, songs, text)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return rows


_HELP = {
    "seed": "random seed; the same seed and knobs write the same bytes (default: %(default)s)",
    "playlists": (
        "how many playlists (default: %(default)s, the bundled sample); streamed to disk, "
        "so 1,000,000 need no more memory than 900"
    ),
}


def _parse_args(argv: Sequence[str] | None) -> tuple[SampleSpec, Path]:
    defaults = SampleSpec()
    parser = argparse.ArgumentParser(
        prog="python -m mining.samplegen",
        description="Write synthetic playlists built from the bundled real song list.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="CSV path (.gz: gzip)")
    for name, value in vars(defaults).items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(value),
            default=value,
            help=_HELP.get(name, "default: %(default)s"),
        )
    args = vars(parser.parse_args(argv))
    output = args.pop("output")
    return SampleSpec(**args), output


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    spec, output = _parse_args(argv)
    try:
        rows = write_sample(spec, output)
    except (ValueError, OSError) as exc:
        print(f"samplegen: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {rows} rows, {spec.playlists} playlists to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
