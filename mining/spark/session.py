"""The SparkSession the job runs in, and what its local JVM may still grow by."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mining.errors import MiningError
from mining.spark.config import (
    APP_NAME,
    DEFAULT_MASTER,
    JVM_OVERHEAD_BYTES,
    SparkOptions,
    launched_by_spark_submit,
    memory_conf,
)
from mining.spark.failures import first_line

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


logger = logging.getLogger("mining.spark")

LOG4J2_CONFIG = Path(__file__).parent.parent / "data" / "spark-log4j2.properties"

SHUFFLE_PARTITIONS_PER_CORE = 4


def session_conf(
    options: SparkOptions, memory_limit: int | None, *, under_spark_submit: bool, log_level: str
) -> dict[str, str]:
    """The configuration a new SparkSession gets: derived defaults, then SPARK_CONF on top."""
    conf: dict[str, str] = {"spark.app.name": APP_NAME}
    if under_spark_submit:
        # spark-submit (the Spark operator, a cluster's launcher) decided master and memory.
        if options.master:
            conf["spark.master"] = options.master
    else:
        master = options.master or DEFAULT_MASTER
        conf["spark.master"] = master
        # This job serves no Spark UI and writes a log, not a progress bar; a local Spark
        # listens on loopback only.
        conf["spark.ui.enabled"] = "false"
        conf["spark.ui.showConsoleProgress"] = "false"
        if master.startswith("local"):
            conf["spark.driver.host"] = "127.0.0.1"
            conf["spark.driver.bindAddress"] = "127.0.0.1"
        if memory_limit is not None:
            conf.update(memory_conf(memory_limit))
        level = {"DEBUG": "info", "INFO": "warn", "WARNING": "warn"}.get(log_level, "error")
        tasks = "info" if log_level == "DEBUG" else "off"
        conf["spark.driver.extraJavaOptions"] = (
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()} "
            f"-Dplaylist_recommender.spark_log_level={level} "
            f"-Dplaylist_recommender.spark_task_log_level={tasks}"
        )
    conf.update(options.conf)
    return conf


def _quiet_python_side(log_level: str) -> None:
    """py4j logs every connection at INFO; pyspark logs each caught query error as JSON."""
    logging.getLogger("py4j").setLevel(logging.DEBUG if log_level == "DEBUG" else logging.WARNING)
    if log_level != "DEBUG":
        from pyspark.logger import PySparkLogger  # noqa: PLC0415

        # We report the error ourselves, in one line.
        for name in ("DataFrameQueryContextLogger", "SQLQueryContextLogger"):
            PySparkLogger.getLogger(name).disabled = True


@contextlib.contextmanager
def spark_session(
    options: SparkOptions, memory_limit: int | None = None, log_level: str = "INFO"
) -> Iterator[SparkSession]:
    """The active SparkSession, or a new one (stopped on exit) built from ``options``."""
    # pyspark warns at import that it does not support pandas 3 fully: it is never asked to here.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    from pyspark.errors import PySparkException  # noqa: PLC0415
    from pyspark.sql import SparkSession  # noqa: PLC0415

    active = SparkSession.getActiveSession()
    if active is not None:
        # Also in the job's guarded worker forked from a process with a session (tests): the
        # worker talks to its parent's JVM over the inherited connection while the parent
        # only waits for it.
        yield active
        return
    conf = session_conf(
        options,
        memory_limit,
        under_spark_submit=launched_by_spark_submit(),
        log_level=log_level,
    )
    if conf.get("spark.master", "").startswith("local"):
        # Read by the JVM at start: without it Spark looks up (and warns about) the host's
        # address, which a loopback-only Spark does not use.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except (PySparkException, OSError) as exc:
        raise MiningError(
            f"cannot start Spark (master {conf.get('spark.master', 'from spark-submit')}): "
            f"{first_line(exc)}"
        ) from exc
    _quiet_python_side(log_level)
    if "spark.sql.shuffle.partitions" not in dict(options.conf):
        # Spark's default of 200 shuffle partitions makes hundreds of tiny tasks on a few cores
        # (3x slower on the bundled sample); a few per core keeps them busy and small.
        session.conf.set(
            "spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS_PER_CORE * parallelism(session))
        )
    logger.info(
        "spark: %s, master %s, %d cores, driver memory %s",
        session.version,
        session.sparkContext.master,
        session.sparkContext.defaultParallelism,
        session.conf.get("spark.driver.memory", "1g (Spark's default)"),
    )
    try:
        yield session
    finally:
        session.stop()


def parallelism(session: SparkSession) -> int:
    """The session's default parallelism (its cores), at least 1."""
    return max(1, int(session.sparkContext.defaultParallelism))


def jvm_headroom() -> int:
    """Bytes the active session's local JVM may still grow by (heap and overhead less what it
    holds now); 0 when its JVM is not this process's child (spark-submit started this job)."""
    from pyspark.sql import SparkSession  # noqa: PLC0415

    from mining.memory import tree_memory  # noqa: PLC0415

    active = SparkSession.getActiveSession()
    process = getattr(active.sparkContext._gateway, "proc", None) if active else None
    if active is None or process is None:
        return 0
    heap = _bytes_of(active.sparkContext.getConf().get("spark.driver.memory", "1g"))
    return max(0, heap + JVM_OVERHEAD_BYTES - tree_memory(process.pid))


def _bytes_of(text: str) -> int:
    """A JVM memory string (``512m``, ``2g``, ``1048576k``, bytes) in bytes."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    text = text.strip().lower().removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
