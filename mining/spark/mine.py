"""Frequent itemsets mined in Spark: pairs counted directly, FPGrowth beyond."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mining.itemsets import ItemsetTable, SizeGroup, group_from_rows
from mining.spark.config import SparkOptions
from mining.spark.failures import reporting_failures
from mining.spark.session import parallelism, spark_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mining.transactions import Transactions

# Up to this MAX_LEN Spark counts itemsets directly instead of running FPGrowth.
PAIRS = 2


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
        numPartitions=parallelism(session),
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
    return session.createDataFrame(table).repartition(parallelism(session))


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
        reporting_failures(session, "mining in Spark"),
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
