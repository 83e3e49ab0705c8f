"""Sizes as messages show them (``512 MiB``); mining/envsettings.py parses those users write."""

from __future__ import annotations


def format_size(size: int) -> str:
    """``536870912`` → ``512 MiB``: the largest binary unit that keeps the number readable."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"
