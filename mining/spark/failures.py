"""Spark's and py4j's exceptions turned into the job's one-line errors."""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mining.errors import (
    DatasetUnavailableError,
    MemoryBudgetError,
    MiningError,
    MiningInputError,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


# Spark's exit code for an executor (here: the local JVM) killed by OutOfMemoryError.
SPARK_OOM_EXIT_CODE = 52

# Longest line quoted from a Spark error, and most Java causes walked for its root.
MAX_MESSAGE = 300
MAX_CAUSES = 20


def _one_line(text: str) -> str:
    """The first non-blank line of ``text``, cut to a readable length."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else "(no message)"
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def first_line(exc: BaseException) -> str:
    """An exception in one line: its message's first line, or its class name when it has none."""
    return _one_line(str(exc)) if str(exc).strip() else type(exc).__name__


def _java_causes(exc: BaseException) -> list[str]:
    """The class names and messages of a Py4JJavaError's Java exception and all its causes."""
    java = getattr(exc, "java_exception", None)
    found: list[str] = []
    while java is not None and len(found) < MAX_CAUSES:
        found.append(f"{java.getClass().getName()}: {java.getMessage()}")
        java = java.getCause()
    return found


def _jvm_exit_code(session: SparkSession) -> int | None:
    """The exit code of the session's JVM if it is this process's child and has ended."""
    process = getattr(session.sparkContext._gateway, "proc", None)
    if process is None:
        return None
    if process.returncode is None:
        # A forked worker inherits its parent's handle: waiting on another's child tells nothing.
        try:
            stat_line = Path(f"/proc/{process.pid}/stat").read_text()
            parent = int(stat_line.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        if parent != os.getpid():
            return None
    code: int | None = process.poll()
    return code


def _spark_failure(exc: BaseException, session: SparkSession, shown: str) -> MiningError:
    """A one-line MiningError for a failed Spark call, with the job's exit code for its cause."""
    causes = _java_causes(exc)
    text = "\n".join([*causes, str(exc)])
    exit_code = _jvm_exit_code(session)
    advice = "raise MIN_SUPPORT, lower MAX_LEN or give the job more memory"
    if "maxResultSize" in text:
        return MemoryBudgetError(
            f"{shown}: the results to collect exceed spark.driver.maxResultSize "
            f"({session.sparkContext.getConf().get('spark.driver.maxResultSize', '1g')}); {advice}"
        )
    if "OutOfMemoryError" in text or exit_code == SPARK_OOM_EXIT_CODE:
        return MemoryBudgetError(
            f"{shown}: Spark ran out of memory (driver memory "
            f"{session.sparkContext.getConf().get('spark.driver.memory', '1g')}); {advice}"
        )
    if exit_code is not None:
        return MiningError(f"{shown}: Spark's JVM exited with code {exit_code}")
    malformed = re.search(r"Malformed CSV record: (.*?)(?: SQLSTATE: \w+)?$", text, re.MULTILINE)
    if malformed:
        return MiningInputError(
            f"{shown}: not readable as CSV: malformed record: {_one_line(malformed.group(1))}"
        )
    scheme = urllib.parse.urlsplit(shown).scheme
    if (
        "No FileSystem for scheme" in text
        or "ClassNotFoundException: Class org.apache.hadoop.fs" in text
    ):
        return DatasetUnavailableError(
            f"{shown}: this Spark has no filesystem for {scheme}:// URLs (add its connector to "
            "Spark's classpath, e.g. hadoop-aws for s3a://)"
        )
    for marker in ("PATH_NOT_FOUND", "FileNotFoundException"):
        if marker in text:
            return DatasetUnavailableError(f"{shown}: {_one_line(_last(causes, exc))}")
    return MiningError(f"{shown}: Spark failed: {_one_line(_last(causes, exc))}")


def _last(causes: list[str], exc: BaseException) -> str:
    """The innermost cause: the one that says what went wrong."""
    return causes[-1] if causes else str(exc)


@contextlib.contextmanager
def reporting_failures(session: SparkSession, shown: str) -> Iterator[None]:
    """Turn Spark's and py4j's exceptions inside the block into one-line MiningErrors."""
    from py4j.protocol import Py4JError  # noqa: PLC0415
    from pyspark.errors import PySparkException  # noqa: PLC0415

    try:
        yield
    except MiningError:
        raise
    except (Py4JError, PySparkException, ConnectionError) as exc:
        raise _spark_failure(exc, session, shown) from exc
