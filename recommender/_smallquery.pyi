"""Types of the compiled small-query path (recommender/_smallquery.c)."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

class SmallQueryIndex:
    """The small-query path of the recommender over its numpy arrays."""

    def __init__(
        self,
        codes: npt.NDArray[np.uint64],
        group_hashes: npt.NDArray[np.uint64],
        group_starts: npt.NDArray[np.int64],
        group_rows: npt.NDArray[np.unsignedinteger],
        row_width: int,
        keys: npt.NDArray[np.uint64],
        consequents: npt.NDArray[np.unsignedinteger],
        weights: npt.NDArray[np.uint32],
        tie_songs: npt.NDArray[np.int64],
        popular: npt.NDArray[np.int64],
        dense_songs: int = ...,
        sum_depth: int = ...,
        song_ids: dict[str, int] | None = ...,
        json_names: tuple[bytes, ...] | None = ...,
        bitmap_share: int = ...,
    ) -> None:
        """``dense_songs``: with at most this many songs (0 to 2^18, the default) the sum ranking
        tallies in an array over song ids, else in a hash table of the query's own.
        ``sum_depth``: the array tally reads this many rules of each run (32 by default) before
        it first checks whether it can stop early; 0: never. ``song_ids`` (each song's exact
        name to its id) and ``json_names`` (each song's name as a JSON string, by id) go
        together, for ``answer_json``. ``bitmap_share``: a run of at least (songs /
        bitmap_share) rules keeps a bitmap of its consequents for the early stop (16 by
        default; 0: none)."""
    def answer(self, query: Sequence[int], limit: int, summed: bool, /) -> tuple[list[int], int]:
        """The answer's song ids for a few distinct known song ids, and how many came from
        rules (the rest are popular fill); ``summed``: the sum ranking, else the best rule."""
    def answer_json(
        self, names: Sequence[str], limit: int, summed: bool, /
    ) -> tuple[bytes, int] | None:
        """``answer`` for a query of song names, as the JSON array of the answer's names
        (exactly as ``json.dumps`` writes it) and how many came from rules; None when a name is
        not a song's exact name or the query has more than 16 distinct songs."""
    @property
    def table_bytes(self) -> int:
        """Bytes held by the antecedent hash table."""
