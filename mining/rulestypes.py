"""The rules file's data model: the rule set, its header and parameters, the format's constants
and errors. mining/rulesfile.py writes and re-exports it, mining/rulesread.py reads it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mining.support import SupportSpec, fixed_count

RULES_FILENAME = "rules.cbor"
FORMAT_NAME = "playlist-recommender/rules"
FORMAT_VERSION = 1
# RFC 8746: uint32, little endian, typed array.
TAG_UINT32_LE = 70

U32 = npt.NDArray[np.uint32]

# Bounds a reader checks before reading the whole file (see docs/rules-format.md): 30 million
# rules fit in 1 GiB, ~90 times the largest real rule set; "format", "format_version" and
# "header" come first and fit in the first 64 KiB; the song names average at most 1 KiB.
MAX_RULES_FILE_BYTES = 1 << 30
HEADER_PREFIX_BYTES = 64 * 1024
MAX_MEAN_SONG_NAME_BYTES = 1024
# Besides the arrays and the names: the header (inside the prefix), and the other map keys and
# CBOR heads (well under 1 KiB).
_OVERHEAD_BYTES = HEADER_PREFIX_BYTES + 1024


class RulesFileError(ValueError):
    """The rules file is unreadable, truncated, inconsistent or of an unknown format."""


class RulesFileMissingError(RulesFileError):
    """There is no file under that name."""


@dataclass(frozen=True)
class MiningParameters:
    """The parameters a rule set was asked for (a change means: mine again).

    ``min_support`` is what the user gave: a fraction, ``"N playlists"`` or ``"auto"``
    (see ``mining.support``); the count it resolved to is ``RulesHeader.min_count``. The
    ``auto_*`` bounds are set only for ``auto``, the one spec they change.
    """

    min_support: SupportSpec
    min_confidence: float
    max_len: int
    auto_floor: int | None = None
    auto_max_rules: int | None = None


@dataclass(frozen=True)
class RulesHeader:
    """Everything about a rule set except the rules themselves."""

    package_version: str
    dataset_url: str
    generated_ns: int
    parameters: MiningParameters
    engine: str
    transactions: int
    song_count: int
    rule_count: int
    # Playlists an itemset had to be in; derived from a fraction when not given.
    min_count: int | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.min_count is None:
            count = fixed_count(self.parameters.min_support, self.transactions)
            if count is None:
                raise ValueError("min_count is required for an 'auto' support")
            # Frozen: the derived default is set once, here.
            object.__setattr__(self, "min_count", count)


@dataclass(frozen=True, eq=False)
class RuleSet:
    """Rules ``A → c`` with a single-song consequent, as parallel arrays.

    Rule ``i`` has antecedent ``antecedent_songs[antecedent_offsets[i]:antecedent_offsets[i+1]]``
    (song ids, ascending), consequent ``consequents[i]``, ``rule_counts[i]`` = playlists containing
    A ∪ {c} and ``antecedent_counts[i]`` = playlists containing A. Confidence and lift are derived
    from these integers, so nothing is lost to rounding.
    """

    header: RulesHeader
    song_names: tuple[str, ...]
    song_counts: U32
    antecedent_offsets: U32
    antecedent_songs: U32
    consequents: U32
    rule_counts: U32
    antecedent_counts: U32

    def antecedent(self, rule: int) -> tuple[int, ...]:
        """The antecedent song ids of one rule."""
        start, end = self.antecedent_offsets[rule], self.antecedent_offsets[rule + 1]
        return tuple(int(s) for s in self.antecedent_songs[start:end])

    def iter_rules(self) -> Iterable[tuple[tuple[str, ...], str, int, int]]:
        """Yield ``(antecedent names, consequent name, rule count, antecedent count)``."""
        names = self.song_names
        for i in range(self.header.rule_count):
            yield (
                tuple(names[s] for s in self.antecedent(i)),
                names[int(self.consequents[i])],
                int(self.rule_counts[i]),
                int(self.antecedent_counts[i]),
            )

    def same_rules(self, other: RuleSet) -> bool:
        """True when both sets hold the same rules over the same song names (order-insensitive)."""
        return set(self.iter_rules()) == set(other.iter_rules())
