"""The job's expected failures, each with the exit code ``python -m mining`` documents."""

from __future__ import annotations


class MiningError(Exception):
    """An expected failure: reported as one line on stderr, no traceback."""

    exit_code = 1


class SettingsError(MiningError, ValueError):
    """An environment variable has a value the job cannot use (names the variable)."""

    exit_code = 2


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
