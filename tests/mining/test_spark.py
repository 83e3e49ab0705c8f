"""MINING_ENGINE=spark: Spark reads a dataset like the reader, and the job writes the same rules.

The in-process tests share one local Spark session (tests/mining/conftest.py); the command-line
tests start their own, as users do.
"""

from __future__ import annotations

import functools
import gzip
import lzma
import os
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
from mining.datadir import generation_files
from mining.errors import (
    DatasetUnavailableError,
    MemoryBudgetError,
    MiningInputError,
    SettingsError,
)
from mining.job import LOCK_FILENAME, run_job
from mining.memory import tree_memory
from mining.pipeline import mine_ruleset
from mining.reader import read_playlists
from mining.rulesfile import RULES_FILENAME, RuleSet, read_rules
from mining.settings import Settings
from mining.spark import (
    DEFAULT_MASTER,
    JVM_OVERHEAD_BYTES,
    MIN_LOCAL_LIMIT,
    PYTHON_SHARE,
    SPARK_INPUT_PREFIX,
    WHITESPACE,
    SparkOptions,
    check_local_limit,
    java_problem,
    jvm_headroom,
    memory_conf,
    read_transactions,
    session_conf,
    spark_location,
)
from mining.transactions import PlaylistFile, Transactions, build_transactions
from mining.version import __version__
from tests.helpers.playlist_files import (
    BAD_INPUTS,
    COURSE_SHAPE,
    REAL_SHAPE,
    SKIPPED_ROWS,
)
from tests.helpers.playlists import playlist_rows, shared_runs, write_playlists_csv
from tests.helpers.processes import run_mining, run_mining_bounded

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
        ({"SPARK_MASTER": "localhost"}, "SPARK_MASTER='localhost' must be a Spark master: "),
        ({"SPARK_MASTER": "local[two]"}, "SPARK_MASTER='local[two]' must be a Spark master: "),
        (
            {"SPARK_CONF": "executor.memory=4g"},
            "SPARK_CONF='executor.memory=4g' must be one 'spark.name=value' per line (line 1)",
        ),
        ({"SPARK_CONF": "spark.ui.enabled=true\nspark.x"}, "SPARK_CONF='spark.x' must be one"),
        ({"SPARK_CONF": "spark.executor.memory="}, "per line (line 1)"),
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


def test_a_budget_too_small_for_a_local_jvm_is_refused_before_it_starts() -> None:
    with pytest.raises(MemoryBudgetError) as caught:
        check_local_limit(SparkOptions(), 512 * 2**20)
    assert str(caught.value) == (
        "memory budget exceeded before starting Spark: 512 MiB (MINING_MEMORY_LIMIT) is less "
        "than a local Spark needs, its JVM alone up to 640 MiB; raise MINING_MEMORY_LIMIT to "
        "at least 914.3 MiB"
    )
    assert caught.value.exit_code == 6
    check_local_limit(SparkOptions(), MIN_LOCAL_LIMIT)
    # A heap the user set, or a cluster's, is not derived from the budget.
    check_local_limit(SparkOptions(conf=(("spark.driver.memory", "512m"),)), 512 * 2**20)
    check_local_limit(SparkOptions("spark://head:7077"), 512 * 2**20)


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
    with pytest.raises(
        SettingsError, match=r"^MINING_ENGINE='spark' must be .*Spark needs a Java 17\+"
    ):
        Settings.from_env(spark_env())


# --- Reading: Spark against mining.reader, on the same files ----------------------------------


def spark_read(spark: Any, path: Path, max_bytes: int | None = None) -> PlaylistFile:
    """What Spark reads of ``path`` for the job (a decompressed copy made and removed)."""
    location, copy = spark_location(path, path.parent, max_bytes)
    try:
        return read_transactions(spark, location, str(path))
    finally:
        if copy is not None:
            assert copy.name.startswith(SPARK_INPUT_PREFIX)
            copy.unlink()


def playlists_by_name(found: PlaylistFile) -> list[frozenset[str]]:
    tx, names = found.transactions, found.transactions.song_names
    return sorted(
        (frozenset(names[s] for s in tx.playlist(p).tolist()) for p in range(tx.playlists)),
        key=sorted,
    )


def assert_same_transactions(found: PlaylistFile, expected: PlaylistFile) -> None:
    """The same rows, song table and playlists (in any order), each playlist's ids ascending."""
    assert (found.rows, found.skipped_rows) == (expected.rows, expected.skipped_rows)
    tx, reference = found.transactions, expected.transactions
    assert tx.song_names == reference.song_names
    assert tx.song_counts.tolist() == reference.song_counts.tolist()
    assert playlists_by_name(found) == playlists_by_name(expected)
    assert tx.indptr[0] == 0 and tx.indptr[-1] == len(tx.indices)
    for p in range(tx.playlists):
        assert np.all(np.diff(tx.playlist(p)) > 0)


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


# The pid,track_name cases share one file (distinct pids): one Spark read instead of five.
MIXED = (
    ORDERED
    + "".join(f"x{line}\n" for line in EXACT_NAMES.split("\n")[1:-1])
    + "".join(f"y{line}\n" for line in UNICODE_BLANKS.split("\n")[1:-1])
)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("real.csv", REAL_SHAPE.encode()),
        # Recognised by content, not by name: a download may be stored under any name.
        ("download-1234-playlists", gzip.compress(COURSE_SHAPE.encode())),
        ("skipped.csv", SKIPPED_ROWS.encode()),
        ("mixed.csv.xz", lzma.compress(MIXED.encode())),
        ("bom-crlf.csv", b"\xef\xbb\xbf" + CRLF.encode() + MIXED.replace("\n", "\r\n").encode()),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_spark_reads_what_the_reader_reads(
    spark: Any, tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert_same_transactions(spark_read(spark, path), read_playlists(path))
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


def test_an_unbalanced_quote_is_refused_as_by_the_reader(spark: Any, tmp_path: Path) -> None:
    path = _write(tmp_path / "quote.csv", 'pid,track_name\n1,a\n1,"b\n2,c\n2,d\n3,e"x\n4,f\n')
    with pytest.raises(MiningInputError) as caught:
        spark_read(spark, path)
    assert "'track_name' value spans lines and holds commas" in str(caught.value)
    assert "unbalanced quote" in str(caught.value)


def test_the_input_limit_holds_for_plain_and_compressed_files(tmp_path: Path) -> None:
    text = "pid,track_name\n" + "".join(f"{p},song {p}\n" for p in range(2_000))
    plain = _write(tmp_path / "plain.csv", text)
    packed = _write(tmp_path / "packed.csv.gz", gzip.compress(text.encode()))
    for path in (plain, packed):
        # Refused before Spark starts: nothing of the text is kept.
        with pytest.raises(MiningInputError, match="the input limit: raise MAX_INPUT_SIZE"):
            spark_location(path, tmp_path, max_bytes=len(text) - 1)
        location, copy = spark_location(path, tmp_path, max_bytes=len(text))
        assert location == (copy or path.resolve()).as_uri()
        if copy is not None:
            assert copy.read_text() == text
            copy.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed.csv.gz", "plain.csv"]


# --- The job and the pipeline -----------------------------------------------------------------


def job_settings(tmp_path: Path, engine: str, **changes: Any) -> Settings:
    return replace(
        Settings(
            dataset_url=str(DATA / "synth_ds1.csv.xz"),
            data_dir=tmp_path / f"data-{engine}",
            min_support=0.05,
            min_confidence=0.7,
            max_len=8,
            engine=engine,
            memory_limit=4 * GIB,
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


def assert_same_rule_set(spark_rules: RuleSet, other: RuleSet) -> None:
    """The same rules and song table; only the engine and the time differ."""
    assert spark_rules.header.engine == "spark"
    assert spark_rules.song_names == other.song_names
    assert np.array_equal(spark_rules.song_counts, other.song_counts)
    for name in ARRAYS:
        assert np.array_equal(getattr(spark_rules, name), getattr(other, name)), name
    assert replace(spark_rules.header, engine="-", generated_ns=0) == replace(
        other.header, engine="-", generated_ns=0
    )


def test_the_spark_job_writes_the_rules_file_pyfim_writes(spark: Any, tmp_path: Path) -> None:
    # In-process: the job's guarded worker uses this test run's Spark session. Playlists
    # sharing runs of 6 songs: itemsets up to 4 songs, each run's subsets at 2 playlists.
    dataset = write_playlists_csv(tmp_path / "runs.csv", shared_runs(pairs=12, run=6, noise=6))
    changes = {"dataset_url": str(dataset), "min_support": "2 playlists", "max_len": 4}
    settings = job_settings(tmp_path, "spark", **changes)
    outcome = run_job(settings)
    pyfim = run_job(job_settings(tmp_path, "pyfim", **changes))
    assert outcome.rules == pyfim.rules > 12 * 6 * 5
    spark_rules = read_rules(settings.data_dir / RULES_FILENAME)
    assert_same_rule_set(spark_rules, read_rules(tmp_path / "data-pyfim" / RULES_FILENAME))
    assert spark_rules.header.min_count == 2
    checkpoint = read_checkpoint(settings.data_dir / CHECKPOINT_FILENAME)
    assert checkpoint == Checkpoint(__version__, settings.normalised_url, outcome.generated_ns)
    # Committed like every engine's rules (a generation and rules.cbor naming it); the
    # decompressed copy Spark read is gone.
    (generation,) = generation_files(settings.data_dir)
    assert sorted(p.name for p in settings.data_dir.iterdir()) == sorted(
        [RULES_FILENAME, CHECKPOINT_FILENAME, LOCK_FILENAME, generation.name]
    )
    assert not list(settings.data_dir.glob(f"{SPARK_INPUT_PREFIX}*"))
    # Up to date: skipped without starting anything, with either engine.
    assert run_job(settings).skipped
    assert run_job(replace(settings, engine="pyfim")).skipped


@functools.cache
def small_runs() -> Transactions:
    """60 playlists in pairs sharing runs of 8 songs, with noise from a pool of 40."""
    return transactions_of(shared_runs(pairs=30, run=8, noise=10, pool=40))


@pytest.mark.parametrize(
    "changes",
    [
        {"min_support": "2 playlists", "max_len": 5},
        # auto: the fewest playlists that fit, then raised until at most 400 rules are left.
        {
            "min_support": "auto",
            "auto_floor": 2,
            "auto_max_rules": 400,
            "max_len": 2,
            "min_confidence": 0.1,
        },
    ],
    ids=["playlists", "auto"],
)
def test_each_support_form_resolves_and_mines_as_for_pyfim(
    spark: Any, tmp_path: Path, changes: dict[str, Any]
) -> None:
    settings = job_settings(tmp_path, "spark", **changes)
    spark_mined = mine_ruleset(small_runs(), settings)
    pyfim_mined = mine_ruleset(small_runs(), replace(settings, engine="pyfim"))
    assert spark_mined.min_count == pyfim_mined.min_count
    assert spark_mined.ruleset.header.rule_count > 0
    assert_same_rule_set(spark_mined.ruleset, pyfim_mined.ruleset)
    header = spark_mined.ruleset.header
    # What was given and what it resolved to, both in the header: the skip logic stays exact.
    assert header.parameters.min_support == changes["min_support"]
    assert header.min_count == spark_mined.min_count
    if changes["min_support"] == "auto":
        assert header.rule_count <= 400
        assert spark_mined.min_count > 2


def test_the_estimate_refuses_before_spark_mines(spark: Any, tmp_path: Path) -> None:
    # The pipeline's own refusal: counted before mining, with the JVM's headroom set aside.
    tx = transactions_of(shared_runs(pairs=10, run=30, noise=5))
    settings = job_settings(tmp_path, "spark", min_support="2 playlists", max_len=8)
    # 256 MiB left for mining once this process, its JVM and the JVM's headroom are counted.
    limit = tree_memory(os.getpid()) + jvm_headroom() + 256 * 2**20
    with pytest.raises(MemoryBudgetError) as caught:
        mine_ruleset(tx, settings, limit=limit)
    line = str(caught.value)
    assert line.startswith("memory budget exceeded before mining: MIN_SUPPORT=2 playlists")
    assert "raise MIN_SUPPORT to" in line or "lower MAX_LEN to" in line
    assert "\n" not in line


def transactions_of(playlists: list[list[str]]) -> Transactions:
    rows = playlist_rows(playlists)
    return build_transactions(rows.playlist_codes, rows.song_codes, rows.names)


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
# The job's own Spark derives its heap from this budget (mining.spark.memory_conf).
CLI_LIMIT = "1536MiB"
# Generous: a JVM start takes seconds, many more on a busy machine.
CLI_TIMEOUT = 280
# The JVM reserves far more address space than it uses: the default cap of tests would stop it.
CLI_ADDRESS_SPACE = 16 * GIB


@pytest.mark.slow  # a JVM of its own
def test_the_command_line_refuses_what_cannot_fit_and_keeps_the_rules(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    exploding = write_playlists_csv(
        tmp_path / "shared-runs.csv", shared_runs(pairs=10, run=30, noise=5)
    )
    common: dict[str, str | Path] = {
        "DATASET_URL": exploding,
        "MINING_MEMORY_LIMIT": CLI_LIMIT,
        "MIN_SUPPORT": "2 playlists",
        "MIN_CONFIDENCE": "0.5",
    }
    first = run_mining(data_dir, **common, MAX_LEN="2", MINING_ENGINE="pyfim")
    assert first.returncode == 0, first.stderr
    before = snapshot(data_dir)
    # 10 runs of 30 songs shared by 2 playlists: ~10^7 itemsets up to 8 songs, counted first.
    result = run_mining_bounded(
        data_dir,
        {**common, "MAX_LEN": "8", "MINING_ENGINE": "spark", "SPARK_MASTER": "local[1]"},
        timeout=CLI_TIMEOUT,
        address_space=CLI_ADDRESS_SPACE,
    )
    assert result.returncode == 6, result.stderr
    assert result.stdout == ""
    for phase in (
        "memory: budget 1.5 GiB (MINING_MEMORY_LIMIT)",
        "spark: 4.",
        "master local[1], 1 cores, driver memory 691m",
        "read: 700 rows (0 skipped: empty pid or track_name), 20 playlists, 387 songs, in",
    ):
        assert phase in result.stderr, phase
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "mining: error: memory budget exceeded before mining: MIN_SUPPORT=2 playlists "
        "(2 of 20 playlists) with MAX_LEN=8 gives "
    )
    assert "raise MIN_SUPPORT to 3 playlists" in last
    assert "Traceback" not in result.stderr
    assert " ERROR " not in result.stderr
    assert snapshot(data_dir) == before


# ~40 s (a JVM of its own); `make test-spark` runs it.
@pytest.mark.slow
@pytest.mark.slow_spark
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
    result = run_mining_bounded(
        data_dir,
        {
            "DATASET_URL": many,
            "MINING_ENGINE": "spark",
            "SPARK_MASTER": "local[1]",
            "SPARK_CONF": "spark.driver.memory=512m\nspark.driver.maxResultSize=1m",
        },
        timeout=CLI_TIMEOUT,
        address_space=CLI_ADDRESS_SPACE,
    )
    assert result.returncode == 6, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mining: error: ")
    assert "spark.driver.maxResultSize (1m)" in last
    assert "raise MIN_SUPPORT" in last
    assert "Traceback" not in result.stderr
    assert snapshot(data_dir) == before
