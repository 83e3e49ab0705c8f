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

Nothing here imports pyspark at module level: the settings import this module, and a skipped
run must stay quick.
"""

from __future__ import annotations

import contextlib
import logging
import lzma
import math
import os
import re
import secrets
import shutil
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mining.envsettings import invalid
from mining.errors import (
    DatasetUnavailableError,
    MemoryBudgetError,
    MiningError,
    MiningInputError,
)
from mining.guard import report
from mining.itemsets import ItemsetTable, SizeGroup, group_from_rows
from mining.quoting import clean
from mining.sizes import format_size

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from mining.pipeline import MinedRules
    from mining.settings import Settings
    from mining.transactions import PlaylistFile, Transactions

logger = logging.getLogger("mining.spark")

DEFAULT_MASTER = "local[*]"
APP_NAME = "playlist-recommender-mining"
# Spark 4 runs on Java 17 and 21 only (setup.cfg pins pyspark 4.x).
MIN_JAVA = 17
# Schemes the job reads itself (downloads or local files); any other URL goes to Spark's Hadoop
# filesystems as it is (s3a://, hdfs://, gs://, abfss://, ...).
JOB_SCHEMES = ("", "file", "http", "https")
_MASTER = re.compile(
    r"local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|yarn|[a-z][a-z0-9+.-]*://\S+"
)
_CONF_KEY = re.compile(r"spark\.[A-Za-z0-9_.\-]+")
# pyarrow's utf8_trim_whitespace and Python's str.isspace() agree on exactly these code points
# (tests/mining/test_spark.py checks both): a pid or track_name made only of them counts as empty.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# A Java regex matching any character that is not such whitespace.
NOT_BLANK = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]"
LOG4J2_CONFIG = Path(__file__).with_name("data") / "spark-log4j2.properties"
# The JVM's own overhead next to its heap (metaspace, code cache, thread stacks, direct buffers),
# and the Python driver's share (song table, itemsets, rules): measured in docs/spark.md.
JVM_OVERHEAD_BYTES = 384 * 2**20
PYTHON_SHARE = 0.3
MIN_HEAP_BYTES = 256 * 2**20
# The smallest budget a local Spark fits: its smallest heap with the JVM's overhead is the
# JVM's share of it (1 - PYTHON_SHARE).
MIN_LOCAL_LIMIT = math.ceil((MIN_HEAP_BYTES + JVM_OVERHEAD_BYTES) / (1 - PYTHON_SHARE))
# Spark's exit code for an executor (here: the local JVM) killed by OutOfMemoryError.
SPARK_OOM_EXIT_CODE = 52
MiB = 2**20
SHUFFLE_PARTITIONS_PER_CORE = 4
# Longest line quoted from a Spark error, and most Java causes walked for its root.
MAX_MESSAGE = 300
MAX_CAUSES = 20
# Up to this MAX_LEN Spark counts itemsets directly instead of running FPGrowth.
PAIRS = 2


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
            f"{_first_line(exc)}"
        ) from exc
    _quiet_python_side(log_level)
    if "spark.sql.shuffle.partitions" not in dict(options.conf):
        # Spark's default of 200 shuffle partitions makes hundreds of tiny tasks on a few cores
        # (3x slower on the bundled sample); a few per core keeps them busy and small.
        session.conf.set(
            "spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS_PER_CORE * _parallelism(session))
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


def _one_line(text: str) -> str:
    """The first non-blank line of ``text``, cut to a readable length."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else "(no message)"
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def _first_line(exc: BaseException) -> str:
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
def _reporting_failures(session: SparkSession, shown: str) -> Iterator[None]:
    """Turn Spark's and py4j's exceptions inside the block into one-line MiningErrors."""
    from py4j.protocol import Py4JError  # noqa: PLC0415
    from pyspark.errors import PySparkException  # noqa: PLC0415

    try:
        yield
    except MiningError:
        raise
    except (Py4JError, PySparkException, ConnectionError) as exc:
        raise _spark_failure(exc, session, shown) from exc


def _parallelism(session: SparkSession) -> int:
    return max(1, int(session.sparkContext.defaultParallelism))


def _frequent_itemsets(
    session: SparkSession,
    baskets: DataFrame,
    transactions: int,
    min_count: int,
    max_len: int | None,
) -> ItemsetTable:
    """FPGrowth on ``baskets`` (one ``items`` array of distinct song ids per row, persisted).

    Spark compares ``ceil(minSupport × n)`` in floating point: it gets a support half a
    transaction below ``min_count`` and its counts are filtered on integers here, so rounding can
    neither add nor drop an itemset.
    """
    from pyspark.ml.fpm import FPGrowth  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    if transactions < min_count:
        return ItemsetTable(())
    model = FPGrowth(
        itemsCol="items",
        minSupport=(min_count - 0.5) / transactions,
        numPartitions=_parallelism(session),
    ).fit(baskets)
    found = model.freqItemsets.where(F.col("freq") >= min_count)
    if max_len is not None:
        # Only the collection is cut: FPGrowth enumerates the longer itemsets all the same.
        found = found.where(F.size("items") <= max_len)
    # Arrow columns straight into numpy: no Python object per itemset.
    table = found.toArrow()
    items = table.column("items").combine_chunks()
    lengths = np.diff(items.offsets.to_numpy()).astype(np.int64)
    flat = items.flatten().to_numpy().astype(np.uint32)
    counts = table.column("freq").to_numpy().astype(np.int64)
    del table, items
    return ItemsetTable.from_flat(flat, lengths, counts)


def _baskets_frame(session: SparkSession, transactions: Transactions, width: int) -> DataFrame:
    """The playlists holding a song ``0..width-1``, as arrays of those songs, in Spark."""
    import pyarrow as pa  # noqa: PLC0415

    from mining.engines import frequent_part  # noqa: PLC0415

    indptr, indices = frequent_part(transactions, width)
    lengths = np.diff(indptr)
    keep = lengths > 0
    offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int32)
    np.cumsum(lengths[keep], out=offsets[1:])
    table = pa.table(
        {"items": pa.ListArray.from_arrays(pa.array(offsets), pa.array(indices.astype(np.int32)))}
    )
    return session.createDataFrame(table).repartition(_parallelism(session))


def mine_transactions(
    transactions: Transactions,
    min_count: int,
    max_len: int | None,
    width: int,
    options: SparkOptions | None = None,
) -> ItemsetTable:
    """FPGrowth over in-memory transactions (songs ``0..width-1`` only), in the active session
    (the job's, which read the dataset), or in a new one made from ``options``."""
    with (
        spark_session(options or SparkOptions()) as session,
        _reporting_failures(session, "mining in Spark"),
    ):
        baskets = _baskets_frame(session, transactions, width).persist()
        try:
            if max_len is not None and max_len <= PAIRS:
                return _pairs(transactions, baskets, min_count, width, max_len)
            return _frequent_itemsets(session, baskets, baskets.count(), min_count, max_len)
        finally:
            baskets.unpersist()


def _pairs(
    transactions: Transactions, baskets: DataFrame, min_count: int, width: int, max_len: int
) -> ItemsetTable:
    """The frequent songs and (``max_len`` 2) pairs, the pairs counted by Spark.

    FPGrowth cannot stop at a length: on playlists sharing long runs of songs it enumerates
    2^run itemsets to keep the pairs, which takes hours where the pairs themselves are few.
    Counting the pairs of each playlist directly is exact and bounded by Σ L²/2 per playlist.
    """
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    singles = SizeGroup(
        np.arange(width, dtype=np.uint32)[:, None], transactions.song_counts[:width].copy()
    )
    if max_len < PAIRS:
        return ItemsetTable([singles])
    # Each playlist's ids are ascending: (items[i], items[j]) for i < j is each pair once.
    pairs = baskets.select(
        F.explode(
            F.expr(
                "flatten(transform(items, (a, i) -> "
                "transform(slice(items, i + 2, size(items)), b -> named_struct('a', a, 'b', b))))"
            )
        ).alias("pair")
    )
    table = (
        pairs.groupBy("pair.a", "pair.b")
        .agg(F.count(F.lit(1)).alias("freq"))
        .where(F.col("freq") >= min_count)
        .toArrow()
    )
    rows = np.column_stack([table.column("a").to_numpy(), table.column("b").to_numpy()]).astype(
        np.uint32
    )
    counts = table.column("freq").to_numpy().astype(np.int64)
    del table
    return ItemsetTable([singles, group_from_rows(rows.reshape(-1, 2), counts)])


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


def is_job_readable(url: str) -> bool:
    """True for what the job fetches itself (paths, file://, http(s)://), False for Hadoop URLs."""
    return urllib.parse.urlsplit(url).scheme.lower() in JOB_SCHEMES


# Not hidden: Spark skips files whose names start with "." or "_".
SPARK_INPUT_PREFIX = "spark-input-"


def _decompressed_for_spark(path: Path, work_dir: Path, max_bytes: int | None) -> Path | None:
    """A plain copy of a compressed local file (gzip or xz, told by content), else None.

    Spark (Hadoop) picks a codec by file name, knows no xz, and cannot bound what it
    decompresses: the job decompresses itself, at most ``max_bytes`` (MAX_INPUT_SIZE) of
    text, into ``work_dir`` (DATA_DIR, which executors on a cluster mount too). The copy is
    the caller's to delete.
    """
    import gzip  # noqa: PLC0415

    from mining.reader import GZIP_MAGIC, XZ_MAGIC  # noqa: PLC0415

    with open(path, "rb") as probe:
        magic = probe.read(len(XZ_MAGIC))
    if magic.startswith(XZ_MAGIC):
        opener: Callable[[Path], Any] = lzma.open
    elif magic.startswith(GZIP_MAGIC):
        opener = gzip.open
    else:
        return None
    target = work_dir / f"{SPARK_INPUT_PREFIX}{secrets.token_hex(6)}.csv"
    try:
        with opener(path) as source, open(target, "xb") as out:
            copied = 0
            while chunk := source.read(1 << 20):
                copied += len(chunk)
                if max_bytes is not None and copied > max_bytes:
                    raise MiningInputError(_too_large(path, f"more than {format_size(max_bytes)}"))
                out.write(chunk)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        target.unlink(missing_ok=True)
        raise MiningInputError(f"{path}: not readable as CSV: {_first_line(exc)}") from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _too_large(path: Path, amount: str) -> str:
    return (
        f"{path}: {amount} of CSV text (after decompression), the input limit: raise "
        "MAX_INPUT_SIZE if the dataset is really that large"
    )


def remove_leftover_inputs(work_dir: Path) -> None:
    """Delete decompressed copies left by a killed run (the caller holds DATA_DIR's lock)."""
    for leftover in work_dir.glob(f"{SPARK_INPUT_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            logger.info("removed %s, left by an interrupted run", leftover.name)


def spark_location(
    source: str | Path, work_dir: Path, max_bytes: int | None = None
) -> tuple[str, Path | None]:
    """What Spark should read for ``source``, and a temporary copy to delete afterwards (or None).

    Local files are checked like the reader checks them (empty, binary, not UTF-8, larger than
    ``max_bytes`` of text) and given to Spark as ``file://`` URLs, decompressed first; Hadoop
    URLs (``s3a://`` and the like) go to Spark unchanged, unbounded by ``max_bytes``.
    """
    if isinstance(source, str) and not is_job_readable(source):
        return source, None
    from mining.reader import check_text  # noqa: PLC0415

    path = Path(source)
    if not path.is_file():
        raise MiningInputError(f"{path}: no such file")
    check_text(path)
    copy = _decompressed_for_spark(path, work_dir, max_bytes)
    if copy is None and max_bytes is not None and path.stat().st_size > max_bytes:
        raise MiningInputError(_too_large(path, f"{path.stat().st_size} bytes"))
    return (copy or path.resolve()).as_uri(), copy


def read_transactions(session: SparkSession, location: str, shown: str) -> PlaylistFile:
    """Read the dataset at ``location`` with Spark into the reader's transactions.

    Parsing, the checks, the distinct songs of each playlist and the song counts are Spark's
    work (on a cluster's executors when it has them); the driver collects the song table and
    each playlist's song ids. ``shown`` names the dataset in errors. Rows whose pid or
    track_name is missing or blank are skipped and counted, as by ``mining.reader``.
    """
    with _reporting_failures(session, shown):
        # Columns are found by their exact names, as the other engines find them.
        session.conf.set("spark.sql.caseSensitive", "true")
        return _read(session, location, shown)


def _read(session: SparkSession, location: str, shown: str) -> PlaylistFile:
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    from mining.reader import PLAYLIST_COLUMN, SONG_COLUMN, require_columns  # noqa: PLC0415

    # RFC 4180: a quote inside a quoted field is doubled (Spark's default escape is a backslash),
    # and a quoted field may hold line breaks (multiLine; each file is then read by one task).
    raw = (
        session.read.option("header", True)
        .option("multiLine", True)
        .option("quote", '"')
        .option("escape", '"')
        .option("mode", "FAILFAST")
        .option("encoding", "UTF-8")
        .csv(location)
    )
    require_columns(shown, raw.columns)
    pid, song = F.col(f"`{PLAYLIST_COLUMN}`"), F.col(f"`{SONG_COLUMN}`")
    # The reader's check for an unbalanced quote: a value whose later lines hold commas.
    swallowing = F.coalesce(
        *[F.when(F.col(f"`{c}`").rlike(SWALLOWED_ROWS), F.lit(c)) for c in raw.columns]
    )
    # One pass over the file: rows are counted per (pid, track_name), so the row totals, the
    # quoting check and the distinct pairs come from the same aggregate.
    grouped = (
        raw.groupBy(pid.alias("pid"), song.alias("track_name"))
        .agg(F.count(F.lit(1)).alias("rows"), F.min(swallowing).alias("swallowing"))
        .withColumn("valid", _valid(F.col("pid"), F.col("track_name")))
        .persist()
    )
    try:
        totals = grouped.agg(
            F.coalesce(F.sum("rows"), F.lit(0)).alias("rows"),
            F.coalesce(F.sum(F.when(F.col("valid"), F.col("rows"))), F.lit(0)).alias("kept"),
            F.min("swallowing").alias("swallowing"),
        ).first()
        assert totals is not None
        if totals["swallowing"] is not None:
            raise MiningInputError(
                f"{shown}: a {clean(totals['swallowing'], 40)!r} value spans lines and holds "
                'commas, the rows after an unbalanced quote ("); fix the quoting (a value may '
                "span lines only between balanced quotes)"
            )
        rows, kept = int(totals["rows"]), int(totals["kept"])
        if kept == 0:
            raise MiningInputError(
                f"{shown}: no rows with both a {PLAYLIST_COLUMN} and a {SONG_COLUMN} "
                f"({rows} data rows)"
            )
        pairs = grouped.where("valid").select("pid", "track_name")
        names, counts = _song_table(pairs)
        transactions = _collect_playlists(session, pairs, names, counts)
    finally:
        grouped.unpersist()
    from mining.transactions import PlaylistFile  # noqa: PLC0415

    return PlaylistFile(transactions, rows, rows - kept)


# What mining.reader calls a value that swallowed the rows after an unbalanced quote.
SWALLOWED_ROWS = "[\r\n][^\r\n]*,"


def _valid(pid: Column, song: Column) -> Column:
    """Both fields present and not made only of whitespace (the reader's rule)."""
    return pid.isNotNull() & song.isNotNull() & pid.rlike(NOT_BLANK) & song.rlike(NOT_BLANK)


def _song_table(pairs: DataFrame) -> tuple[list[str], np.ndarray]:
    """Songs by descending playlist count, then name: the ids ``mining.reader`` gives them."""
    import pyarrow.compute as pc  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    counted = pairs.groupBy("track_name").agg(F.count(F.lit(1)).alias("playlists")).toArrow()
    # Arrow orders strings by their UTF-8 bytes, which is code point order, like Python's.
    order = pc.sort_indices(
        counted, sort_keys=[("playlists", "descending"), ("track_name", "ascending")]
    )
    counted = counted.take(order)
    return (
        counted.column("track_name").to_pylist(),
        counted.column("playlists").to_numpy().astype(np.int64),
    )


def _collect_playlists(
    session: SparkSession, pairs: DataFrame, names: list[str], counts: np.ndarray
) -> Transactions:
    """Each playlist's song ids, ascending, collected into the reader's CSR transactions."""
    import pyarrow as pa  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    from mining.transactions import Transactions  # noqa: PLC0415

    ids = session.createDataFrame(
        pa.table(
            {
                "track_name": pa.array(names, pa.string()),
                "id": pa.array(np.arange(len(names), dtype=np.int32)),
            }
        )
    )
    collected = (
        pairs.join(ids, "track_name")
        .groupBy("pid")
        .agg(F.array_sort(F.collect_list("id")).alias("items"))
        .select("items")
        .toArrow()
        .column("items")
        .combine_chunks()
    )
    offsets = collected.offsets.to_numpy().astype(np.int64)
    indices = collected.flatten().to_numpy().astype(np.int64)
    return Transactions(
        song_names=tuple(names),
        song_counts=counts,
        indptr=offsets - offsets[0],
        indices=indices,
    )


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
