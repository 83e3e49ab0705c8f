"""Typed settings from environment variables, for every entry point: one error, one message.

Every entry point (``python -m mining``, ``python -m http_api``, ``python -m client``,
``python -m evaluation``) is configured through its environment and reads it with
:class:`EnvReader`. A value it cannot use raises :class:`SettingsError` with one message style,
naming the variable, the value as given (sanitised and cut short) and what is accepted::

    PORT='http' must be a whole number from 0 to 65535
    WATCHER='fanotify' must be one of auto, inotify, polling
    MINING_MEMORY_LIMIT='10MiB' must be a size of at least 256 MiB (the interpreter, ...)

An unset or blank variable takes its default. This module imports nothing else of the project,
so every package may use it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Flag values, as 12-factor tools take them.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
# How much of a value a message shows: enough to see the mistake, too little to leak a secret.
SHOWN_VALUE_CHARS = 40

_SIZE_UNITS = {
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
SIZE_EXAMPLE = "a size such as 512MiB, 2GB or 1048576 (bytes)"


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used; the message names it.

    Entry points report it as one line and exit with :attr:`exit_code`.
    """

    exit_code = 2


def shown(value: str) -> str:
    """``value`` quoted for a message: at most SHOWN_VALUE_CHARS characters, unprintable ones
    escaped (a terminal escape in a variable cannot reach the terminal)."""
    cut = value if len(value) <= SHOWN_VALUE_CHARS else value[:SHOWN_VALUE_CHARS] + "…"
    return repr(cut)


def invalid(name: str, value: str, accepted: str, note: str | None = None) -> SettingsError:
    """The error for ``name=value``: ``NAME='value' must be <accepted> (<note>)``."""
    message = f"{name}={shown(value)} must be {accepted}"
    return SettingsError(f"{message} ({note})" if note else message)


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB).

    Raise ValueError for anything else (a fraction of a byte is rounded down).
    """
    match = _SIZE.fullmatch(text.strip().lower())
    value = math.nan
    if match and match.group(2) in _SIZE_UNITS:
        value = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if not math.isfinite(value):
        raise ValueError(f"not {SIZE_EXAMPLE}")
    return int(value)


def choose(name: str, raw: str | None, choices: Sequence[str], default: str) -> str:
    """``raw`` (the value of ``name``) as one of ``choices`` (lower case), given in any case;
    ``default`` when unset or blank."""
    value = (raw or "").strip()
    if not value:
        return default
    if value.lower() not in choices:
        raise invalid(name, value, f"one of {', '.join(choices)}")
    return value.lower()


def _whole(
    name: str, raw: str, low: int, high: int, accepted: str, *, note: str | None = None
) -> int:
    """``raw`` as a whole number from ``low`` to ``high``, else the error saying ``accepted``."""
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, raw, accepted, note) from None
    if not low <= value <= high:
        raise invalid(name, raw, accepted, note)
    return value


def _range_text(low: float, high: float, low_open: bool) -> str:
    if math.isinf(high):
        return f"greater than {low:g}" if low_open else f"at least {low:g}"
    if low_open:
        return f"greater than {low:g} and at most {high:g}"
    return f"from {low:g} to {high:g}"


class EnvReader:
    """Reads typed values from one environment (``os.environ`` unless given)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = os.environ if env is None else env

    def raw(self, name: str) -> str | None:
        """The value of ``name`` with surrounding whitespace removed; None if unset or blank."""
        value = self.env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        """Any text; the default when unset or blank."""
        return self.raw(name) or default

    def integer(
        self, name: str, default: int, low: int, high: int, *, note: str | None = None
    ) -> int:
        """A whole number from ``low`` to ``high``."""
        raw = self.raw(name)
        if raw is None:
            return default
        return _whole(name, raw, low, high, f"a whole number from {low} to {high}", note=note)

    def number(
        self,
        name: str,
        default: float,
        low: float,
        high: float = math.inf,
        *,
        low_open: bool = False,
        unit: str = "",
    ) -> float:
        """A finite number from ``low`` (excluded if ``low_open``) to ``high``; ``unit`` names
        what it counts in messages ("seconds")."""
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        above_low = value > low if low_open else value >= low
        if not (math.isfinite(value) and above_low and value <= high):
            what = f"a number of {unit}" if unit else "a number"
            raise invalid(name, raw, f"{what} {_range_text(low, high, low_open)}")
        return value

    def size(
        self,
        name: str,
        default: int,
        minimum: int = 1,
        minimum_text: str = "1 byte",
        *,
        note: str | None = None,
    ) -> int:
        """A size in bytes (``512MiB``, ``1.5GB``, ``1048576``) of at least ``minimum``, which
        messages show as ``minimum_text``."""
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = parse_size(raw)
        except ValueError:
            raise invalid(name, raw, SIZE_EXAMPLE) from None
        if value < minimum:
            raise invalid(name, raw, f"a size of at least {minimum_text}", note)
        return value

    def optional_size(
        self, name: str, minimum: int = 1, minimum_text: str = "1 byte", *, note: str | None = None
    ) -> int | None:
        """A size as :meth:`size`, or None when unset or blank."""
        if self.raw(name) is None:
            return None
        return self.size(name, minimum, minimum, minimum_text, note=note)

    def flag(self, name: str, default: bool) -> bool:
        """1 or 0 (or true/false, yes/no, on/off, in any case)."""
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise invalid(name, raw, "1 or 0 (or true/false, yes/no, on/off)")
        return raw.lower() in TRUE_WORDS

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        """One of ``choices`` (lower case), given in any case."""
        return choose(name, self.env.get(name), choices, default)

    def log_level(self, default: str = "INFO", name: str = "LOG_LEVEL") -> str:
        """A logging level name (DEBUG, INFO, WARNING, ERROR or CRITICAL), in any case."""
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.upper() not in LOG_LEVELS:
            raise invalid(name, raw, f"one of {', '.join(LOG_LEVELS)}")
        return raw.upper()

    def auto_or_integer(self, name: str, low: int, high: int) -> int | None:
        """``auto`` (or unset): None; else a whole number from ``low`` to ``high``."""
        raw = self.raw(name)
        if raw is None or raw.lower() == "auto":
            return None
        return _whole(name, raw, low, high, f"auto or a whole number from {low} to {high}")
