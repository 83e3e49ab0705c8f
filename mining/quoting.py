"""What of the input a message may show: short, sanitised excerpts, never whole lines.

Messages go to logs and terminals. A dataset or a file in DATA_DIR may be anything
(``DATASET_URL=file:///etc/shadow`` is a typo away), so a message quotes at most a
few characters of it, with control characters (terminal escapes included) made
visible, and lists only names that look like column names.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

# Enough to find the place in the file with grep, too little to carry a secret whole.
EXCERPT_CHARS = 24
# A column name is shown only if it is this short and made of letters, digits, " _-.".
COLUMN_NAME_CHARS = 40
SHOWN_COLUMNS = 8


def clean(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, non-printable ones escaped, "…" if cut."""
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text[:limit])
    return shown + ("…" if len(text) > limit else "")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short quoted excerpt of ``text``: see :func:`clean`."""
    return f"'{clean(text, limit)}'"


def _looks_like_a_column_name(name: str) -> bool:
    stripped = name.strip()
    return 0 < len(stripped) <= COLUMN_NAME_CHARS and all(
        ch.isalnum() or ch in " _-." for ch in stripped
    )


def column_list(names: Sequence[str]) -> str:
    """``3 columns: pid, name, album_name``: the plain names only, at most a few of them."""
    plain = [name.strip() for name in names if _looks_like_a_column_name(name)]
    shown = plain[:SHOWN_COLUMNS]
    hidden = len(names) - len(shown)
    count = f"{len(names)} column{'s' if len(names) != 1 else ''}"
    if not shown:
        return f"{count}, none named like a CSV column"
    more = f" and {hidden} not shown" if hidden else ""
    return f"{count}: {', '.join(shown)}{more}"


def redact_url(url: str) -> str:
    """The URL without a password (``https://user:***@host/...``), for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
