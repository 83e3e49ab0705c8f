"""Sizes as users write them (``512MiB``, ``1.5GB``, ``1048576``) and as messages show them."""

from __future__ import annotations

import math
import re

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)")


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB).

    Raise ValueError naming the problem; a size must be at least one byte.
    """
    match = _SIZE.fullmatch(text.strip().lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError("is not a size such as 512MiB, 2GB or 1048576 (bytes)")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value) or value < 1:
        raise ValueError("must be at least 1 byte")
    return int(value)


def format_size(size: int) -> str:
    """``536870912`` → ``512 MiB``: the largest binary unit that keeps the number readable."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"
