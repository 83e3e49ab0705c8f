"""MINING_ENGINE=spark: Spark reads a dataset like the reader, and the job writes the same rules.

The in-process tests share one local Spark session (tests/mining/conftest.py); the command-line
tests start their own, as users do.
"""

from __future__ import annotations

import gzip
import lzma
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, read_checkpoint
from mining.engines import SongTable
from mining.errors import DatasetUnavailableError, MiningInputError, SettingsError
from mining.job import LOCK_FILENAME, run_job
from mining.reader import read_playlists
from mining.rulesfile import RULES_FILENAME, RuleSet, read_rules
from mining.settings import Settings
from mining.spark import (
    DEFAULT_MASTER,
    JVM_OVERHEAD_BYTES,
    PYTHON_SHARE,
    SPARK_INPUT_PREFIX,
    WHITESPACE,
    SparkOptions,
    java_problem,
    memory_conf,
    read_dataset,
    session_conf,
    spark_location,
)
from mining.version import __version__
from tests.helpers.playlist_files import (
    BAD_INPUTS,
    COURSE_SHAPE,
    REAL_SHAPE,
    SKIPPED_ROWS,
)
from tests.helpers.processes import run_mining

DATA = Path(__file__).parents[1] / "data"
GIB = 2**30


# --- Settings: no JVM needed -------------------------------------------------------------------


def test_blank_means_what_pyarrow_and_python_call_whitespace() -> None:
    every = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    trimmed = pc.utf8_trim_whitespace(pa.array(every)).to_pylist()
    assert {c for c, t in zip(every, trimmed, strict=True) if t == ""} == set(WHITESPACE)
    assert {c for c in every if c.isspace()} == set(WHITESPACE)


def spark_env(**env: str) -> dict[str, str]:
    return {"MINING_ENGINE": "spark", **env}


def test_spark_master_and_conf_are_read_with_the_engine() -> None:
    settings = Settings.from_env(
        spark_env(
            SPARK_MASTER="local[3]",
            SPARK_CONF=(
                "# executors of a standalone cluster\n"
                "spark.executor.memory = 4g\n\n"
                "spark.driver.extraJavaOptions=-Dx=1 -Dy=2\n"
            ),
        )
    )
    assert settings.spark == SparkOptions(
        "local[3]",
        (("spark.executor.memory", "4g"), ("spark.driver.extraJavaOptions", "-Dx=1 -Dy=2")),
    )
    assert Settings.from_env(spark_env()).spark == SparkOptions()
    # Another engine never reads them, so a leftover value cannot stop it.
    other = Settings.from_env({"MINING_ENGINE": "pyfim", "SPARK_CONF": "nonsense"})
    assert other.spark == SparkOptions()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SPARK_MASTER": "localhost"}, "SPARK_MASTER='localhost' is not a Spark master"),
        ({"SPARK_MASTER": "local[two]"}, "SPARK_MASTER='local[two]' is not a Spark master"),
        ({"SPARK_CONF": "executor.memory=4g"}, "SPARK_CONF line 1 ('executor.memory=4g')"),
        ({"SPARK_CONF": "spark.ui.enabled=true\nspark.x"}, "SPARK_CONF line 2 ('spark.x')"),
        ({"SPARK_CONF": "spark.executor.memory="}, "is not 'spark.name=value'"),
    ],
)
def test_bad_spark_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=None) as caught:
        Settings.from_env(spark_env(**env))
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_hadoop_urls_are_for_spark_only() -> None:
    url = "s3a://playlists/2023/ds1.csv"
    settings = Settings.from_env(spark_env(DATASET_URL=url))
    assert settings.normalised_url == url
    assert spark_location(url, Path("/nonexistent")) == (url, None)
    with pytest.raises(SettingsError, match="MINING_ENGINE=spark also reads"):
        Settings.from_env({"DATASET_URL": url, "MINING_ENGINE": "pyfim"})


def test_a_local_spark_listens_on_loopback_and_its_memory_follows_the_budget() -> None:
    conf = session_conf(SparkOptions(), 2 * GIB, under_spark_submit=False, log_level="INFO")
    assert conf["spark.master"] == DEFAULT_MASTER
    assert conf["spark.driver.bindAddress"] == conf["spark.driver.host"] == "127.0.0.1"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.driver.memory"] == memory_conf(2 * GIB)["spark.driver.memory"]
    assert "spark_log_level=warn" in conf["spark.driver.extraJavaOptions"]
    # What the user wrote wins over anything derived.
    mine = SparkOptions("spark://head:7077", (("spark.driver.memory", "6g"),))
    conf = session_conf(mine, 2 * GIB, under_spark_submit=False, log_level="DEBUG")
    assert (conf["spark.master"], conf["spark.driver.memory"]) == ("spark://head:7077", "6g")
    assert "spark.driver.bindAddress" not in conf
    assert "spark_log_level=info" in conf["spark.driver.extraJavaOptions"]


def test_under_spark_submit_master_and_memory_are_its_own() -> None:
    conf = session_conf(SparkOptions(), 2 * GIB, under_spark_submit=True, log_level="INFO")
    assert "spark.master" not in conf
    assert not any("memory" in key for key in conf)
    conf = session_conf(SparkOptions("local[1]"), None, under_spark_submit=True, log_level="INFO")
    assert conf["spark.master"] == "local[1]"


@pytest.mark.parametrize("limit", [GIB // 2, GIB, 2 * GIB, 4 * GIB, 64 * GIB])
def test_the_heaps_leave_room_for_the_jvm_and_python(limit: int) -> None:
    conf = memory_conf(limit)
    heap = int(conf["spark.driver.memory"].removesuffix("m")) * 2**20
    assert conf["spark.executor.memory"] == conf["spark.driver.memory"]
    if limit >= GIB:
        assert heap + JVM_OVERHEAD_BYTES + PYTHON_SHARE * limit <= limit
    if limit >= 2 * GIB:
        assert heap >= limit / 2
    collected = int(conf["spark.driver.maxResultSize"].removesuffix("m")) * 2**20
    assert collected <= heap


def fake_java(home: Path, version: str) -> Path:
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return home


def test_java_is_found_and_its_version_checked_without_starting_it(tmp_path: Path) -> None:
    assert java_problem({"JAVA_HOME": str(fake_java(tmp_path / "j17", "17.0.21"))}) is None
    assert java_problem({"JAVA_HOME": str(fake_java(tmp_path / "j21", "21.0.2"))}) is None
    old = java_problem({"JAVA_HOME": str(fake_java(tmp_path / "j11", "11.0.2"))})
    assert old is not None
    assert "needs Java 17 or newer" in old
    assert "is Java 11" in old
    missing = java_problem({"JAVA_HOME": str(tmp_path / "nothing")})
    assert missing is not None
    assert "has no bin/java" in missing
    assert "openjdk-17-jre-headless" in missing
    # The machine's own runtime (the project's set-up installs it).
    assert java_problem() is None


def test_the_spark_engine_without_java_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nothing"))
    with pytest.raises(SettingsError, match=r"MINING_ENGINE='spark': Spark needs a Java 17\+"):
        Settings.from_env(spark_env())


# --- Reading: Spark against mining.reader, on the same files ----------------------------------


def spark_read(spark: Any, path: Path) -> tuple[SongTable, list[frozenset[str]]]:
    """The song table and each playlist's songs, as Spark reads ``path`` for the job."""
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    location, copy = spark_location(path, path.parent)
    try:
        with read_dataset(spark, location, str(path)) as (pairs, songs):
            playlists = pairs.groupBy("pid").agg(F.collect_set("track_name").alias("songs"))
            return songs, sorted(
                (frozenset(row["songs"]) for row in playlists.collect()), key=sorted
            )
    finally:
        if copy is not None:
            assert copy.name.startswith(SPARK_INPUT_PREFIX)
            copy.unlink()


def reader_read(path: Path) -> tuple[SongTable, list[frozenset[str]]]:
    result = read_playlists(path)
    tx = result.transactions
    songs = SongTable(result.rows, result.skipped_rows, tx.playlists, tx.song_names, tx.song_counts)
    names = tx.song_names
    playlists = [frozenset(names[s] for s in tx.playlist(p).tolist()) for p in range(tx.playlists)]
    return songs, sorted(playlists, key=sorted)


# Ids by playlist count, then name in code point order ("Z" < "a " < "z" < "Ä").
ORDERED = "pid,track_name\n" + "".join(
    f"{pid},{song}\n"
    for pid, song in (
        *[(1, "b"), (1, "b"), (1, "c"), (2, "b"), (2, "a"), (3, "b"), (3, "a")],
        *[(4, "c"), (4, "z"), (5, "Ä"), (5, "a "), (5, "Z")],
    )
)
EXACT_NAMES = "pid,track_name\n1,Beyoncé\n1,Beyonce\u0301\n1, padded \n2,\u00a0x\u3000\n"
# Blank in Unicode's sense: skipped, like the reader skips them.
UNICODE_BLANKS = "pid,track_name\n1,a\n2,\u00a0\u2003\u3000\n\u2028,b\n3,\u200b\n"
CRLF = "pid,track_name\r\n1,a\r\n1,b\r\n2,a\r\n"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("real.csv", REAL_SHAPE.encode()),
        ("course.csv", COURSE_SHAPE.encode()),
        ("skipped.csv", SKIPPED_ROWS.encode()),
        ("ordered.csv", ORDERED.encode()),
        ("exact.csv", EXACT_NAMES.encode()),
        ("blanks.csv", UNICODE_BLANKS.encode()),
        ("crlf.csv", CRLF.encode()),
        ("bom.csv", b"\xef\xbb\xbf" + ORDERED.encode()),
        ("real.csv.gz", gzip.compress(REAL_SHAPE.encode())),
        ("real.csv.xz", lzma.compress(REAL_SHAPE.encode())),
        # Recognised by content, not by name: a download may be stored under any name.
        ("download-1234-playlists", gzip.compress(COURSE_SHAPE.encode())),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_spark_reads_what_the_reader_reads(
    spark: Any, tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    (songs, playlists), (expected_songs, expected_playlists) = (
        spark_read(spark, path),
        reader_read(path),
    )
    assert (songs.rows, songs.skipped_rows, songs.playlists) == (
        expected_songs.rows,
        expected_songs.skipped_rows,
        expected_songs.playlists,
    )
    assert songs.song_names == expected_songs.song_names
    assert songs.song_counts.tolist() == expected_songs.song_counts.tolist()
    assert playlists == expected_playlists
    # Nothing is left next to the input.
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize(
    ("content", "message"),
    [(content, message) for _, content, message in BAD_INPUTS],
    ids=[name for name, _, _ in BAD_INPUTS],
)
def test_bad_input_is_the_readers_one_line_error(
    spark: Any, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    with pytest.raises(MiningInputError) as caught:
        spark_read(spark, path)
    text = str(caught.value)
    assert message in text
    assert text.startswith(str(path))
    assert "\n" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.csv"]


# --- The job ----------------------------------------------------------------------------------


def job_settings(tmp_path: Path, engine: str, **changes: Any) -> Settings:
    return replace(
        Settings(
            dataset_url=str(DATA / "synth_ds1.csv.xz"),
            data_dir=tmp_path / f"data-{engine}",
            min_support=0.05,
            min_confidence=0.7,
            max_len=8,
            engine=engine,
        ),
        **changes,
    )


ARRAYS = (
    "antecedent_offsets",
    "antecedent_songs",
    "consequents",
    "rule_counts",
    "antecedent_counts",
)


def assert_same_rules_file(spark_rules: RuleSet, other: RuleSet) -> None:
    """Byte-for-byte the same rules and song table; only the engine and the time differ."""
    assert spark_rules.song_names == other.song_names
    assert np.array_equal(spark_rules.song_counts, other.song_counts)
    for name in ARRAYS:
        assert np.array_equal(getattr(spark_rules, name), getattr(other, name)), name
    assert replace(spark_rules.header, engine="-", generated_ns=0) == replace(
        other.header, engine="-", generated_ns=0
    )


def test_the_spark_job_writes_the_rules_file_pyfim_writes(spark: Any, tmp_path: Path) -> None:
    settings = job_settings(tmp_path, "spark")
    outcome = run_job(settings)
    assert outcome.rules == 7_283
    pyfim = run_job(job_settings(tmp_path, "pyfim"))
    spark_rules = read_rules(settings.data_dir / RULES_FILENAME)
    assert spark_rules.header.engine == "spark"
    assert_same_rules_file(spark_rules, read_rules(tmp_path / "data-pyfim" / RULES_FILENAME))
    assert pyfim.rules == 7_283
    checkpoint = read_checkpoint(settings.data_dir / CHECKPOINT_FILENAME)
    assert checkpoint == Checkpoint(__version__, settings.normalised_url, outcome.generated_ns)
    # The decompressed copy Spark read is gone.
    assert sorted(p.name for p in settings.data_dir.iterdir()) == sorted(
        [RULES_FILENAME, CHECKPOINT_FILENAME, LOCK_FILENAME]
    )
    # Up to date: skipped without starting anything, with either engine.
    assert run_job(settings).skipped
    assert run_job(replace(settings, engine="pyfim")).skipped


def snapshot(data_dir: Path) -> dict[str, bytes]:
    return {name: (data_dir / name).read_bytes() for name in (RULES_FILENAME, CHECKPOINT_FILENAME)}


@pytest.mark.parametrize(
    ("make_source", "error"),
    [
        (lambda tmp: tmp / "missing.csv", DatasetUnavailableError),
        (
            lambda tmp: _write(tmp / "ragged.csv", b"pid,track_name\n1,a\n2,b,extra\n"),
            MiningInputError,
        ),
        # No Hadoop filesystem for the scheme (the S3 connector is not in the image): exit 4.
        (lambda tmp: "s3a://playlists/ds1.csv", DatasetUnavailableError),
    ],
    ids=["missing-file", "ragged-row", "unknown-filesystem"],
)
def test_a_failed_spark_run_keeps_the_previous_rules(
    spark: Any, tmp_path: Path, make_source: Callable[[Path], object], error: type[Exception]
) -> None:
    first = job_settings(tmp_path, "pyfim", dataset_url=str(_write(tmp_path / "ok.csv", ORDERED)))
    run_job(replace(first, min_support=0.2, max_len=2))
    before = snapshot(first.data_dir)
    failing = replace(first, engine="spark", dataset_url=str(make_source(tmp_path)))
    with pytest.raises(error) as caught:
        run_job(failing)
    assert "\n" not in str(caught.value)
    assert snapshot(first.data_dir) == before
    assert not list(first.data_dir.glob(f"{SPARK_INPUT_PREFIX}*"))


def _write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# --- The command line, each run with its own Spark ---------------------------------------------

SMALL = (
    "pid,track_name\n"
    + "".join(f"{p},a\n{p},b\n" for p in range(6))
    + "".join(f"{p},c\n" for p in range(3))
    + ",orphan\n"
)
# A small heap: the datasets here are tiny, and the machine is shared.
CLI_SPARK = {"SPARK_MASTER": "local[1]", "SPARK_CONF": "spark.driver.memory=512m"}
# Generous: a JVM start takes seconds, many more on a busy machine.
CLI_TIMEOUT = 280


def test_the_command_line_mines_with_spark_and_logs_each_phase(tmp_path: Path) -> None:
    dataset = _write(tmp_path / "small.csv", SMALL)
    result = run_mining(
        tmp_path / "data",
        timeout=CLI_TIMEOUT,
        DATASET_URL=dataset,
        MIN_SUPPORT="0.5",
        MINING_ENGINE="spark",
        **CLI_SPARK,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    for phase in (
        "download: not needed, reading",
        "spark: 4.",
        "master local[1], 1 cores, driver memory 512m",
        "read: 16 rows (1 skipped: empty pid or track_name), 6 playlists, 3 songs",
        "mine: 7 frequent itemsets (in >= 3 of 6 playlists, <= 8 songs, engine spark)",
        "rules: 6 rules (confidence >= 0.7)",
        "done: 6 rules",
    ):
        assert phase in result.stderr
    assert "Traceback" not in result.stderr
    assert " ERROR " not in result.stderr
    assert read_rules(tmp_path / "data" / RULES_FILENAME).header.rule_count == 6


def test_more_results_than_the_driver_may_collect_exit_6_and_keep_the_rules(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    dataset = _write(tmp_path / "small.csv", SMALL)
    first = run_mining(data_dir, DATASET_URL=dataset, MIN_SUPPORT="0.5", MINING_ENGINE="pyfim")
    assert first.returncode == 0, first.stderr
    before = snapshot(data_dir)
    # 60,000 distinct long song names: a song table of several MiB against a 1 MiB bound.
    many = tmp_path / "many.csv"
    with open(many, "w") as f:
        f.write("pid,track_name\n")
        for i in range(60_000):
            f.write(f"{i % 500},song number {i:06d} with a name long enough to count\n")
    result = run_mining(
        data_dir,
        timeout=CLI_TIMEOUT,
        DATASET_URL=many,
        MINING_ENGINE="spark",
        SPARK_MASTER="local[1]",
        SPARK_CONF="spark.driver.memory=512m\nspark.driver.maxResultSize=1m",
    )
    assert result.returncode == 6, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mining: error: ")
    assert "spark.driver.maxResultSize (1m)" in last
    assert "raise MIN_SUPPORT" in last
    assert "Traceback" not in result.stderr
    assert snapshot(data_dir) == before
