"""One Spark session for the whole test run, started only when a test uses the spark engine.

Starting Spark's JVM takes several seconds, so every in-process Spark test shares this session
(the engine and the job use the active session when there is one). Its driver memory is small:
the tests' datasets are.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mining.spark import SparkOptions, spark_session

TEST_SPARK = SparkOptions(
    master="local[2]",
    # Tiny datasets: one shuffle partition per core keeps each query to a few tasks.
    conf=(("spark.driver.memory", "768m"), ("spark.sql.shuffle.partitions", "2")),
)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """The shared SparkSession (local[2])."""
    with spark_session(TEST_SPARK, log_level="WARNING") as session:
        yield session


@pytest.fixture(autouse=True)
def _spark_for_the_spark_engine(request: pytest.FixtureRequest) -> None:
    """Tests parametrized over the engines get the shared session when theirs is spark."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("engine") == "spark":
        request.getfixturevalue("spark")


def _uses_spark(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    engine = callspec.params.get("engine") if callspec is not None else None
    return "spark" in getattr(item, "fixturenames", ()) or engine == "spark"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test on the shared session pays for its JVM's start: slow, so `make check` skips it."""
    for item in items:
        if _uses_spark(item):
            item.add_marker(pytest.mark.slow)
