"""The job's expected failures, each with the exit code ``python -m mining`` documents."""

from __future__ import annotations

from mining.envsettings import SettingsError

__all__ = [
    "EXPECTED_ERRORS",
    "DatasetUnavailableError",
    "MemoryBudgetError",
    "MiningError",
    "MiningInputError",
    "OutputError",
    "SettingsError",
]


class MiningError(Exception):
    """An expected failure: reported as one line on stderr, no traceback."""

    exit_code = 1


# What the entry points report as one line with its exit code: an expected failure of the
# job, or a setting it cannot use (mining/envsettings.py, exit code 2).
EXPECTED_ERRORS = (MiningError, SettingsError)


class MiningInputError(MiningError, ValueError):
    """The dataset cannot be mined: missing, not CSV, without the columns, or no valid rows."""

    exit_code = 3


class DatasetUnavailableError(MiningError):
    """The dataset could not be downloaded."""

    exit_code = 4


class OutputError(MiningError):
    """DATA_DIR cannot be created, locked or written."""

    exit_code = 5


class MemoryBudgetError(MiningError):
    """The parameters need, or the job reached, more memory than MINING_MEMORY_LIMIT allows."""

    exit_code = 6
