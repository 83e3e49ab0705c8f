"""``MINING_ENGINE=spark``: the same job on Apache Spark (``local[*]`` here, a cluster there).

Spark reads the dataset itself (RFC 4180 CSV, ``pid`` and ``track_name`` found by exact name),
keeps each playlist's distinct songs and numbers the songs exactly as ``mining.reader`` does
(descending playlist count, then name). The driver collects the song table and each playlist's
song ids (4 bytes a song of a playlist), and from there the job's own pipeline
(``mining.pipeline``) runs as for every other engine: the support resolved from counts
(``auto`` included), the memory estimate and its refusal, then the mining itself, which is
MLlib's FPGrowth on the cluster, and the rules derived from its integer counts on the driver.
So the rules file is the same. See docs/spark.md.

FPGrowth has no maximum itemset length: the executors enumerate every frequent itemset, however
long, and only the collection to the driver is cut at MAX_LEN. Its memory is bounded through
Spark's own settings (the driver's heap, and with it the local executors', is derived from the
job's memory budget); an exhausted heap or result limit ends the job with exit code 6.

The parts: ``config`` (SPARK_MASTER, SPARK_CONF, Java, the memory a local Spark gets),
``session`` (the SparkSession), ``failures`` (Spark's errors in one line), ``location`` (what
Spark reads for a source), ``reading`` (the CSV into transactions) and ``mine`` (the itemsets);
this module runs them for the job (``read_and_mine``).

Nothing here imports pyspark at module level: the settings import this package, and a skipped
run must stay quick.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mining.guard import report
from mining.spark.config import (
    DEFAULT_MASTER,
    JVM_OVERHEAD_BYTES,
    MIN_LOCAL_LIMIT,
    PYTHON_SHARE,
    SparkOptions,
    check_local_limit,
    java_problem,
    launched_by_spark_submit,
    memory_conf,
    parse_conf,
)
from mining.spark.location import (
    SPARK_INPUT_PREFIX,
    is_job_readable,
    remove_leftover_inputs,
    spark_location,
)
from mining.spark.mine import mine_transactions
from mining.spark.reading import WHITESPACE, read_transactions
from mining.spark.session import jvm_headroom, session_conf, spark_session

if TYPE_CHECKING:
    from mining.pipeline import MinedRules
    from mining.settings import Settings

__all__ = [
    "DEFAULT_MASTER",
    "JVM_OVERHEAD_BYTES",
    "MIN_LOCAL_LIMIT",
    "PYTHON_SHARE",
    "SPARK_INPUT_PREFIX",
    "WHITESPACE",
    "SparkOptions",
    "check_local_limit",
    "is_job_readable",
    "java_problem",
    "jvm_headroom",
    "launched_by_spark_submit",
    "memory_conf",
    "mine_transactions",
    "parse_conf",
    "read_and_mine",
    "read_transactions",
    "remove_leftover_inputs",
    "session_conf",
    "spark_location",
    "spark_session",
]

logger = logging.getLogger("mining.spark")


def read_and_mine(
    source: str | Path, downloaded: bool, settings: Settings, limit: int
) -> MinedRules:
    """The guarded worker's part for MINING_ENGINE=spark: Spark reads, the job's pipeline mines.

    ``source`` is the local file the job fetched (``downloaded``: into DATA_DIR, ours to
    delete) or a Hadoop URL Spark reads itself. The session started here, sized by
    ``limit``, is the one ``mine_itemsets`` then finds active.
    """
    from mining.pipeline import mine_ruleset  # noqa: PLC0415
    from mining.transactions import read_summary  # noqa: PLC0415

    check_local_limit(settings.spark, limit)
    remove_leftover_inputs(settings.data_dir)
    try:
        location, copy = spark_location(source, settings.data_dir, settings.input_limit(limit))
        try:
            with spark_session(settings.spark, limit, settings.log_level) as session:
                report("read", f"reading {source} with Spark")
                started = time.perf_counter()
                found = read_transactions(session, location, str(source))
                # Everything needed is in memory now.
                if copy is not None:
                    copy.unlink(missing_ok=True)
                if downloaded:
                    Path(source).unlink(missing_ok=True)
                logger.info("%s (Spark)", read_summary(found, time.perf_counter() - started))
                return mine_ruleset(found.transactions, settings, limit=limit)
        finally:
            if copy is not None:
                copy.unlink(missing_ok=True)
    finally:
        if downloaded:
            Path(source).unlink(missing_ok=True)
