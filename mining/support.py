"""``MIN_SUPPORT`` as users write it (a fraction, ``N playlists`` or ``auto``) and as a count.

Mining compares integer playlist counts only: every spec resolves to ``min_count``,
the fewest playlists an itemset must be in. This module has no heavy import: the
rules-file reader uses it to read the support recorded in a header.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

AUTO = "auto"
_COUNT = re.compile(r"(\d+)\s*playlists?", re.IGNORECASE)

# What MIN_SUPPORT holds once parsed: a fraction of the playlists (0 < x <= 1), a
# canonical "N playlists" text, or "auto".
SupportSpec = float | str


class SupportSpecError(ValueError):
    """Text that is not a support: says what is accepted."""


def exact_fraction(value: float) -> Fraction:
    """The decimal a user wrote (0.7 → 7/10), not the binary float nearest to it.

    ``repr`` gives the shortest decimal that round-trips, which is what was typed
    for any threshold written with up to 15 significant digits.
    """
    return Fraction(repr(value))


def count_for_fraction(min_support: float, transactions: int) -> int:
    """The smallest integer c with c / transactions ≥ min_support, compared exactly."""
    return math.ceil(exact_fraction(min_support) * transactions)


def playlists_text(count: int) -> str:
    """``count`` written the way MIN_SUPPORT accepts it: ``1 playlist``, ``2 playlists``."""
    return f"{count} playlist" if count == 1 else f"{count} playlists"


def parse_support(raw: str) -> SupportSpec:
    """Parse ``auto``, ``N playlists`` (N ≥ 1) or a fraction ``0 < x ≤ 1``; canonical form."""
    text = raw.strip()
    if text.lower() == AUTO:
        return AUTO
    counted = _COUNT.fullmatch(text)
    if counted:
        count = int(counted.group(1))
        if count < 1:
            raise SupportSpecError("a playlist count must be at least 1")
        return playlists_text(count)
    try:
        value = float(text)
    except ValueError:
        raise SupportSpecError(
            "must be a fraction of the playlists (0 < x <= 1), 'N playlists' or 'auto'"
        ) from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise SupportSpecError(
            "a fraction must be greater than 0 and at most 1 (or write 'N playlists' or 'auto')"
        )
    return value


def spec_text(spec: SupportSpec) -> str:
    """The spec as recorded in a rules header and shown in logs: ``0.025``, ``2 playlists``."""
    return spec if isinstance(spec, str) else repr(float(spec))


def spec_count(spec: SupportSpec) -> int | None:
    """The playlist count of an ``N playlists`` spec; None for a fraction or ``auto``."""
    if isinstance(spec, str):
        counted = _COUNT.fullmatch(spec)
        if counted:
            return int(counted.group(1))
    return None


def fixed_count(spec: SupportSpec, transactions: int) -> int | None:
    """The count a fraction or ``N playlists`` spec means for ``transactions`` playlists.

    At least 1: a fraction below one playlist (1e-9) means every song that occurs.
    None for ``auto``, which the memory budget resolves.
    """
    if isinstance(spec, str):
        return spec_count(spec)
    return max(1, count_for_fraction(float(spec), transactions))
