"""``MINING_ENGINE=spark``: the same job on Apache Spark (``local[*]`` here, a cluster there).

Spark reads the dataset itself (RFC 4180 CSV, ``pid`` and ``track_name`` found by exact name),
keeps each playlist's distinct songs, numbers the songs exactly as ``mining.reader`` does
(descending playlist count, then name) and mines them with MLlib's FPGrowth. The driver collects
the song table and the frequent itemsets of at most MAX_LEN songs with their integer counts;
``mining.rules`` derives the rules from those like for every other engine, so the rules file is
the same. See docs/spark.md.

FPGrowth has no maximum itemset length: the executors enumerate every frequent itemset, however
long, and only the collection to the driver is cut at MAX_LEN. Its memory is bounded through
Spark's own settings (the driver's heap, and with it the local executors', is derived from the
job's memory budget); an exhausted heap ends the job with exit code 6.

Nothing here imports pyspark at module level: the settings import this module, and a skipped
run must stay quick.
"""

from __future__ import annotations

import contextlib
import logging
import lzma
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

from mining.engines import MinedDataset, SongTable
from mining.errors import (
    DatasetUnavailableError,
    MemoryBudgetError,
    MiningError,
    MiningInputError,
    SettingsError,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from mining.engines import Itemsets
    from mining.reader import Transactions
    from mining.settings import Settings

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
# Spark's exit code for an executor (here: the local JVM) killed by OutOfMemoryError.
SPARK_OOM_EXIT_CODE = 52
MiB = 2**20
SHUFFLE_PARTITIONS_PER_CORE = 4


@dataclass(frozen=True)
class SparkOptions:
    """Where Spark runs and the Spark settings the user gave (``SPARK_MASTER``, ``SPARK_CONF``)."""

    # None: `local[*]`, or the master spark-submit was given when it launched this job.
    master: str | None = None
    # `spark.*` settings in the order written; they win over anything the job derives.
    conf: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SparkOptions:
        """Read ``SPARK_MASTER`` and ``SPARK_CONF``; raise SettingsError naming a bad one."""
        master = env.get("SPARK_MASTER", "").strip() or None
        if master is not None and not _MASTER.fullmatch(master):
            raise SettingsError(
                f"SPARK_MASTER={master!r} is not a Spark master "
                "(local[*], local[N], spark://HOST:PORT, k8s://https://HOST, yarn)"
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
            raise SettingsError(
                f"SPARK_CONF line {number} ({line[:60]!r}) is not 'spark.name=value' "
                "(one setting per line)"
            )
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
    return line if len(line) <= 300 else line[:299] + "…"


def _first_line(exc: BaseException) -> str:
    return _one_line(str(exc)) if str(exc).strip() else type(exc).__name__


def _java_causes(exc: BaseException) -> list[str]:
    """The class names and messages of a Py4JJavaError's Java exception and all its causes."""
    java = getattr(exc, "java_exception", None)
    found: list[str] = []
    while java is not None and len(found) < 20:
        found.append(f"{java.getClass().getName()}: {java.getMessage()}")
        java = java.getCause()
    return found


def _spark_failure(exc: BaseException, session: SparkSession, shown: str) -> MiningError:
    """A one-line MiningError for a failed Spark call, with the job's exit code for its cause."""
    causes = _java_causes(exc)
    text = "\n".join([*causes, str(exc)])
    process = getattr(session.sparkContext._gateway, "proc", None)
    exit_code = process.poll() if process is not None else None
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
) -> Itemsets:
    """FPGrowth on ``baskets`` (one ``items`` array of distinct song ids per row, persisted).

    Spark compares ``ceil(minSupport × n)`` in floating point: it gets a support half a
    transaction below ``min_count`` and its counts are filtered on integers here, so rounding can
    neither add nor drop an itemset.
    """
    from pyspark.ml.fpm import FPGrowth  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    if transactions < min_count:
        return {}
    model = FPGrowth(
        itemsCol="items",
        minSupport=(min_count - 0.5) / transactions,
        numPartitions=_parallelism(session),
    ).fit(baskets)
    found = model.freqItemsets.where(F.col("freq") >= min_count)
    if max_len is not None:
        # Only the collection is cut: FPGrowth enumerates the longer itemsets all the same.
        found = found.where(F.size("items") <= max_len)
    table = found.toArrow()
    items = table.column("items").to_pylist()
    counts = table.column("freq").to_pylist()
    return {tuple(sorted(i)): int(c) for i, c in zip(items, counts, strict=True)}


def mine_transactions(
    transactions: Transactions,
    min_count: int,
    max_len: int | None,
    width: int,
    options: SparkOptions | None = None,
) -> Itemsets:
    """FPGrowth over in-memory transactions (songs ``0..width-1`` only), in the active session."""
    import pyarrow as pa  # noqa: PLC0415

    from mining.engines import frequent_part  # noqa: PLC0415

    indptr, indices = frequent_part(transactions, width)
    lengths = np.diff(indptr)
    keep = lengths > 0
    offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int32)
    np.cumsum(lengths[keep], out=offsets[1:])
    baskets_table = pa.table(
        {"items": pa.ListArray.from_arrays(pa.array(offsets), pa.array(indices.astype(np.int32)))}
    )
    with (
        spark_session(options or SparkOptions()) as session,
        _reporting_failures(session, "mining in Spark"),
    ):
        baskets = session.createDataFrame(baskets_table).repartition(_parallelism(session))
        baskets = baskets.persist()
        try:
            return _frequent_itemsets(session, baskets, len(offsets) - 1, min_count, max_len)
        finally:
            baskets.unpersist()


def is_job_readable(url: str) -> bool:
    """True for what the job fetches itself (paths, file://, http(s)://), False for Hadoop URLs."""
    return urllib.parse.urlsplit(url).scheme.lower() in JOB_SCHEMES


def _decompressed_for_spark(path: Path, work_dir: Path) -> Path | None:
    """A plain copy of a local file compressed in a way Spark would not recognise, else None.

    Spark (Hadoop) picks a codec by file name: it knows `.gz` but not xz, and a download may be
    stored under any name. The copy goes into ``work_dir`` (DATA_DIR, which executors on a cluster
    mount too) and is the caller's to delete.
    """
    from mining.reader import GZIP_MAGIC, XZ_MAGIC  # noqa: PLC0415

    with open(path, "rb") as probe:
        magic = probe.read(len(XZ_MAGIC))
    if magic.startswith(XZ_MAGIC):
        opener: Callable[[Path], Any] = lzma.open
    elif magic.startswith(GZIP_MAGIC) and not path.name.endswith(".gz"):
        import gzip  # noqa: PLC0415

        opener = gzip.open
    else:
        return None
    target = work_dir / f"{SPARK_INPUT_PREFIX}{secrets.token_hex(6)}.csv"
    try:
        with opener(path) as source, open(target, "xb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        target.unlink(missing_ok=True)
        raise MiningInputError(f"{path}: not readable as CSV: {_first_line(exc)}") from exc
    return target


# Not hidden: Spark skips files whose names start with "." or "_".
SPARK_INPUT_PREFIX = "spark-input-"


def remove_leftover_inputs(work_dir: Path) -> None:
    """Delete decompressed copies left by a killed run (the caller holds DATA_DIR's lock)."""
    for leftover in work_dir.glob(f"{SPARK_INPUT_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            logger.info("removed %s, left by an interrupted run", leftover.name)


@contextlib.contextmanager
def read_dataset(
    session: SparkSession, location: str, shown: str
) -> Iterator[tuple[DataFrame, SongTable]]:
    """The distinct valid ``(pid, track_name)`` pairs (cached while in the block) and song table.

    ``shown`` names the dataset in errors. Rows whose pid or track_name is missing or blank are
    skipped and counted, as by ``mining.reader``.
    """

    with _reporting_failures(session, shown):
        # Columns are found by their exact names, as the other engines find them.
        session.conf.set("spark.sql.caseSensitive", "true")
        yield from _read(session, location, shown)


def _read(
    session: SparkSession, location: str, shown: str
) -> Iterator[tuple[DataFrame, SongTable]]:
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
    # One pass over the file: rows are counted per (pid, track_name), so the row totals and the
    # distinct pairs come from the same aggregate.
    grouped = (
        raw.groupBy(pid.alias("pid"), song.alias("track_name"))
        .agg(F.count(F.lit(1)).alias("rows"))
        .withColumn("valid", _valid(F.col("pid"), F.col("track_name")))
        .persist()
    )
    try:
        totals = grouped.agg(
            F.coalesce(F.sum("rows"), F.lit(0)).alias("rows"),
            F.coalesce(F.sum(F.when(F.col("valid"), F.col("rows"))), F.lit(0)).alias("kept"),
        ).first()
        assert totals is not None
        rows, kept = int(totals["rows"]), int(totals["kept"])
        if kept == 0:
            raise MiningInputError(
                f"{shown}: no rows with both a {PLAYLIST_COLUMN} and a {SONG_COLUMN} "
                f"({rows} data rows)"
            )
        pairs = grouped.where("valid").select("pid", "track_name")
        yield pairs, _song_table(pairs, rows, rows - kept)
    finally:
        grouped.unpersist()


def _valid(pid: Column, song: Column) -> Column:
    """Both fields present and not made only of whitespace (the reader's rule)."""
    return pid.isNotNull() & song.isNotNull() & pid.rlike(NOT_BLANK) & song.rlike(NOT_BLANK)


def _song_table(pairs: DataFrame, rows: int, skipped: int) -> SongTable:
    """Songs by descending playlist count, then name: the ids ``mining.reader`` gives them."""
    import pyarrow.compute as pc  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    counted = pairs.groupBy("track_name").agg(F.count(F.lit(1)).alias("playlists")).toArrow()
    # Arrow orders strings by their UTF-8 bytes, which is code point order, like Python's.
    order = pc.sort_indices(
        counted, sort_keys=[("playlists", "descending"), ("track_name", "ascending")]
    )
    counted = counted.take(order)
    playlists = pairs.select("pid").distinct().count()
    return SongTable(
        rows=rows,
        skipped_rows=skipped,
        playlists=int(playlists),
        song_names=tuple(counted.column("track_name").to_pylist()),
        song_counts=counted.column("playlists").to_numpy().astype(np.int64),
    )


def _baskets(session: SparkSession, pairs: DataFrame, songs: SongTable, width: int) -> DataFrame:
    """One row per playlist holding a frequent song: the array of its frequent song ids."""
    import pyarrow as pa  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    ids = session.createDataFrame(
        pa.table(
            {
                "track_name": pa.array(songs.song_names[:width], pa.string()),
                "id": pa.array(np.arange(width, dtype=np.int32)),
            }
        )
    )
    return (
        pairs.join(F.broadcast(ids), "track_name")
        .groupBy("pid")
        .agg(F.collect_list("id").alias("items"))
        .select("items")
        .repartition(_parallelism(session))
    )


def read_and_mine(
    location: str,
    shown: str,
    min_count_for: Callable[[SongTable], int],
    max_len: int | None,
    options: SparkOptions,
    *,
    memory_limit: int | None = None,
    log_level: str = "INFO",
) -> MinedDataset:
    """Read the dataset at ``location`` with Spark and mine it; ``shown`` names it in errors.

    ``min_count_for`` turns the song table (playlist count, song counts) into the integer
    support threshold: the job's support setting, resolved once the data is known.
    """
    with (
        spark_session(options, memory_limit, log_level) as session,
        _reporting_failures(session, shown),
    ):
        started = time.perf_counter()
        with read_dataset(session, location, shown) as (pairs, songs):
            logger.info(
                "read: %d rows (%d skipped: empty pid or track_name), %d playlists, %d songs, "
                "in %.2f s (Spark)",
                songs.rows,
                songs.skipped_rows,
                songs.playlists,
                len(songs.song_names),
                time.perf_counter() - started,
            )
            started = time.perf_counter()
            min_count = min_count_for(songs)
            width = int(np.count_nonzero(songs.song_counts >= min_count))
            if width == 0 or (max_len is not None and max_len < 1):
                return MinedDataset(songs, min_count, {}, time.perf_counter() - started)
            baskets = _baskets(session, pairs, songs, width).persist()
            try:
                itemsets = _frequent_itemsets(session, baskets, baskets.count(), min_count, max_len)
            finally:
                baskets.unpersist()
    return MinedDataset(songs, min_count, itemsets, time.perf_counter() - started)


def spark_location(source: str | Path, work_dir: Path) -> tuple[str, Path | None]:
    """What Spark should read for ``source``, and a temporary copy to delete afterwards (or None).

    Local files are checked like the reader checks them (empty, binary, not UTF-8) and given to
    Spark as ``file://`` URLs, decompressed first when Spark could not tell their compression by
    name; Hadoop URLs (``s3a://`` and the like) go to Spark unchanged.
    """
    if isinstance(source, str) and not is_job_readable(source):
        return source, None
    from mining.reader import check_text  # noqa: PLC0415

    path = Path(source)
    if not path.is_file():
        raise MiningInputError(f"{path}: no such file")
    check_text(path)
    copy = _decompressed_for_spark(path, work_dir)
    return (copy or path.resolve()).as_uri(), copy


def mine_dataset(
    settings: Settings,
    fetch: Callable[[Settings], tuple[Path, bool]],
    min_count_for: Callable[[SongTable], int],
    memory_limit: int | None = None,
) -> MinedDataset:
    """The job's read-and-mine step on Spark.

    ``fetch`` gets the dataset like for the other engines (a download into DATA_DIR, or a local
    file read in place); Hadoop URLs go to Spark directly. ``min_count_for`` resolves the support
    setting once the song table is known; ``memory_limit`` (bytes) sizes Spark's heaps.
    """
    remove_leftover_inputs(settings.data_dir)
    downloaded: Path | None = None
    if is_job_readable(settings.dataset_url):
        path, was_downloaded = fetch(settings)
        downloaded = path if was_downloaded else None
        source: str | Path = path
    else:
        source = settings.dataset_url
        logger.info("download: not needed, Spark reads %s itself", source)
    try:
        location, copy = spark_location(source, settings.data_dir)
        try:
            return read_and_mine(
                location,
                str(source),
                min_count_for,
                settings.max_len,
                settings.spark,
                memory_limit=memory_limit,
                log_level=settings.log_level,
            )
        finally:
            if copy is not None:
                copy.unlink(missing_ok=True)
    finally:
        # Executors may read the file until the last stage: removed only now.
        if downloaded is not None:
            downloaded.unlink(missing_ok=True)
