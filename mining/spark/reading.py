"""Reading the playlists CSV with Spark into the reader's transactions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mining.errors import MiningInputError
from mining.quoting import clean
from mining.spark.failures import reporting_failures

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from mining.transactions import PlaylistFile, Transactions

# pyarrow's utf8_trim_whitespace and Python's str.isspace() agree on exactly these code points
# (tests/mining/test_spark.py checks both): a pid or track_name made only of them counts as empty.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# A Java regex matching any character that is not such whitespace.
NOT_BLANK = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]"


def read_transactions(session: SparkSession, location: str, shown: str) -> PlaylistFile:
    """Read the dataset at ``location`` with Spark into the reader's transactions.

    Parsing, the checks, the distinct songs of each playlist and the song counts are Spark's
    work (on a cluster's executors when it has them); the driver collects the song table and
    each playlist's song ids. ``shown`` names the dataset in errors. Rows whose pid or
    track_name is missing or blank are skipped and counted, as by ``mining.reader``.
    """
    with reporting_failures(session, shown):
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
