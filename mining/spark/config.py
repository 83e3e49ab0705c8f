"""Spark's settings (SPARK_MASTER, SPARK_CONF), the Java check and a local Spark's memory."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mining.envsettings import invalid
from mining.errors import MemoryBudgetError
from mining.sizes import format_size

DEFAULT_MASTER = "local[*]"
APP_NAME = "playlist-recommender-mining"
# Spark 4 runs on Java 17 and 21 only (setup.cfg pins pyspark 4.x).
MIN_JAVA = 17

_MASTER = re.compile(
    r"local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|yarn|[a-z][a-z0-9+.-]*://\S+"
)
_CONF_KEY = re.compile(r"spark\.[A-Za-z0-9_.\-]+")

# The JVM's own overhead next to its heap (metaspace, code cache, thread stacks, direct buffers),
# and the Python driver's share (song table, itemsets, rules): measured in docs/spark.md.
JVM_OVERHEAD_BYTES = 384 * 2**20
PYTHON_SHARE = 0.3
MIN_HEAP_BYTES = 256 * 2**20
# The smallest budget a local Spark fits: its smallest heap with the JVM's overhead is the
# JVM's share of it (1 - PYTHON_SHARE).
MIN_LOCAL_LIMIT = math.ceil((MIN_HEAP_BYTES + JVM_OVERHEAD_BYTES) / (1 - PYTHON_SHARE))

MiB = 2**20


@dataclass(frozen=True)
class SparkOptions:
    """Where Spark runs and the Spark settings the user gave (``SPARK_MASTER``, ``SPARK_CONF``)."""

    # None: `local[*]`, or the master spark-submit was given when it launched this job.
    master: str | None = None
    # `spark.*` settings in the order written; they win over anything the job derives.
    conf: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SparkOptions:
        """Read ``SPARK_MASTER`` and ``SPARK_CONF``; raise a SettingsError naming a bad one."""
        master = env.get("SPARK_MASTER", "").strip() or None
        if master is not None and not _MASTER.fullmatch(master):
            raise invalid(
                "SPARK_MASTER",
                master,
                "a Spark master: local[*], local[N], spark://HOST:PORT, k8s://https://HOST or yarn",
            )
        return cls(master, parse_conf(env.get("SPARK_CONF", "")))


def parse_conf(text: str) -> tuple[tuple[str, str], ...]:
    """``SPARK_CONF``: one ``spark.key=value`` per line; blank lines and ``#`` lines ignored."""
    entries: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _CONF_KEY.fullmatch(key) or not value:
            raise invalid("SPARK_CONF", line, "one 'spark.name=value' per line", f"line {number}")
        entries.append((key, value))
    return tuple(entries)


def java_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why no usable Java runtime is found (without starting one), or None when it looks fine."""
    env = os.environ if env is None else env
    home = env.get("JAVA_HOME", "").strip()
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on PATH"
        return (
            f"Spark needs a Java {MIN_JAVA}+ runtime: {where} "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    release = Path(java).resolve().parent.parent / "release"
    with contextlib.suppress(OSError):
        found = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.MULTILINE)
        if found and int(found.group(1)) < MIN_JAVA:
            return (
                f"Spark 4 needs Java {MIN_JAVA} or newer; {java} is Java {found.group(1)} "
                "(set JAVA_HOME to a newer runtime)"
            )
    return None


def memory_conf(memory_limit: int) -> dict[str, str]:
    """Spark memory settings that keep this process tree (Python + local JVM) within the limit.

    In local mode the executors are threads of the driver's JVM, so its heap bounds them too.
    On a cluster the same values size the driver and each executor's heap, for executors that
    the job's launcher starts with this configuration.
    """
    heap = max(MIN_HEAP_BYTES, int(memory_limit * (1 - PYTHON_SHARE)) - JVM_OVERHEAD_BYTES)
    heap_mib = heap // MiB
    return {
        "spark.driver.memory": f"{heap_mib}m",
        "spark.executor.memory": f"{heap_mib}m",
        # What the driver may collect (song table, itemsets): refused cleanly beyond this.
        "spark.driver.maxResultSize": f"{max(64, heap_mib // 2)}m",
    }


def launched_by_spark_submit(env: Mapping[str, str] | None = None) -> bool:
    """True when spark-submit started this Python process (its JVM is already running)."""
    env = os.environ if env is None else env
    return "PYSPARK_GATEWAY_PORT" in env


def check_local_limit(options: SparkOptions, limit: int) -> None:
    """Refuse a budget a local Spark's JVM cannot fit in (its heap is then derived from it)."""
    derived = "spark.driver.memory" not in dict(options.conf)
    local = (options.master or DEFAULT_MASTER).startswith("local")
    if derived and local and not launched_by_spark_submit() and limit < MIN_LOCAL_LIMIT:
        raise MemoryBudgetError(
            f"memory budget exceeded before starting Spark: {format_size(limit)} "
            f"(MINING_MEMORY_LIMIT) is less than a local Spark needs, its JVM alone up to "
            f"{format_size(MIN_HEAP_BYTES + JVM_OVERHEAD_BYTES)}; raise MINING_MEMORY_LIMIT to "
            f"at least {format_size(MIN_LOCAL_LIMIT)}"
        )
