"""Song names: matching a query's names to song ids, and the autocomplete search.

Names match exactly, else by :func:`normalise_name` (several songs with one normalised form:
the most popular wins, then the smallest name). The search finds names whose normalised form
starts with the normalised query by a bisection of the sorted normalised names (the ``limit``
most popular of that range by a partial sort), then names containing it by a scan of one string
holding the normalised names in popularity order, one per line: the first hits are the most
popular, so the scan stops after ``limit`` of them, and a miss costs one pass over the string
(benchmarks/recommend.py measures both).
"""

from __future__ import annotations

import json
import sys
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mining.limits import UNKNOWN_LIST_LIMIT

I64 = npt.NDArray[np.int64]


def normalise_name(name: str) -> str:
    """The form names are matched and searched by: NFC, casefolded, whitespace trimmed/collapsed.

    Casefolding can undo composition ("ǰ" folds to "j" + combining caron), hence NFC on both
    sides. Inner whitespace runs collapse to one space so "Hey  Jude" finds "Hey Jude", and a
    normalised name never holds a newline (the search text relies on that).
    """
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    return " ".join(folded.split())


@dataclass(frozen=True, eq=False)
class NameIndex:
    """The name tables of one rule set (Python objects per song, never per rule)."""

    song_names: tuple[str, ...]
    # Song ids by popularity: playlist count desc, then name asc.
    popular: I64
    exact_ids: dict[str, int]
    normalised_ids: dict[str, int]
    # Each name as a JSON string (json.dumps), so an answer is joined, not encoded.
    json_names: tuple[bytes, ...]
    # Prefixes: the normalised names sorted, and each one's popularity position.
    sorted_names: list[str]
    sorted_positions: I64
    # Substrings: the normalised names in popularity order, one per line, and the line starts.
    search_text: str
    line_starts: list[int]

    @classmethod
    def build(cls, names: tuple[str, ...], popular: I64) -> NameIndex:
        """The tables for songs ``names`` (by id), ``popular`` giving their popularity order."""
        # Indexed by popularity position.
        normalised = [normalise_name(names[song]) for song in popular.tolist()]
        normalised_ids: dict[str, int] = {}
        for song, form in zip(popular.tolist(), normalised, strict=True):
            normalised_ids.setdefault(form, song)
        line_starts = [1]
        for form in normalised:
            line_starts.append(line_starts[-1] + len(form) + 1)
        by_name = sorted(range(len(names)), key=normalised.__getitem__)
        sorted_positions = np.array(by_name, dtype=np.int64)
        sorted_positions.setflags(write=False)
        return cls(
            song_names=names,
            popular=popular,
            exact_ids={name: song for song, name in enumerate(names)},
            normalised_ids=normalised_ids,
            json_names=tuple(json.dumps(name).encode() for name in names),
            sorted_names=[normalised[position] for position in by_name],
            sorted_positions=sorted_positions,
            search_text="\n" + "".join(form + "\n" for form in normalised),
            line_starts=line_starts,
        )

    def resolve(self, songs: Sequence[str]) -> tuple[list[int], list[str]]:
        """The distinct song ids a query names, and its first UNKNOWN_LIST_LIMIT distinct names
        that name no song, in query order."""
        found: dict[int, None] = {}
        unknown: list[str] = []
        for name in dict.fromkeys(songs):
            song = self.exact_ids.get(name)
            if song is None:
                song = self.normalised_ids.get(normalise_name(name))
                if song is None:
                    if len(unknown) < UNKNOWN_LIST_LIMIT:
                        unknown.append(name)
                    continue
            found[song] = None
        return list(found), unknown

    def search(self, query: str, limit: int) -> list[str]:
        """Autocomplete: names starting with the query, then containing it; most popular first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        needle = normalise_name(query)
        if not needle:
            return [self.song_names[song] for song in self.popular[:limit].tolist()]
        # Popularity positions: position p is the song self.popular[p].
        low = bisect_left(self.sorted_names, needle)
        above = _successor(needle)
        high = len(self.sorted_names) if above is None else bisect_left(self.sorted_names, above)
        positions = self.sorted_positions[low:high]
        if len(positions) > limit:
            positions = np.partition(positions, limit - 1)[:limit]
        found = dict.fromkeys(np.sort(positions).tolist())
        # Lines of the search text are in popularity order, so the first hits are the most
        # popular; a hit jumps to the next line, so the work is bounded by `limit` (a miss
        # costs one scan of the text).
        text, starts = self.search_text, self.line_starts
        at = text.find(needle) if len(found) < limit else -1
        while at >= 0 and len(found) < limit:
            line = bisect_right(starts, at) - 1
            found.setdefault(line, None)
            at = text.find(needle, starts[line + 1])
        popular = self.popular
        return [self.song_names[int(popular[position])] for position in found]


def _successor(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None: no such string)."""
    stripped = prefix.rstrip(chr(sys.maxunicode))
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)
