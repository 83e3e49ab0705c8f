"""Types of the compiled small-query path (http_api/_smallquery.c)."""

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
        tie_songs: npt.NDArray[np.int64],
        popular: npt.NDArray[np.int64],
    ) -> None: ...
    def ids(self, query: Sequence[int], limit: int, /) -> list[int]:
        """The answer's song ids for a few distinct known song ids, best first."""
    @property
    def table_bytes(self) -> int:
        """Bytes held by the antecedent hash table."""
