"""``python -m mining`` as users run it: exit codes, one-line errors, a log line per phase."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from aiohttp import web

from mining.checkpoint import CHECKPOINT_FILENAME
from mining.rulesfile import RULES_FILENAME
from tests.helpers.logs import json_records
from tests.helpers.processes import REPO, capped, mining_env, run_mining
from tests.helpers.webserver import serving

SMALL = (
    "pid,track_name\n"
    + "".join(f"{p},a\n{p},b\n" for p in range(6))
    + "".join(f"{p},c\n" for p in range(3))
)


def run(tmp_path: Path, *args: str, **env: str | Path) -> subprocess.CompletedProcess[str]:
    return run_mining(tmp_path / "data", *args, **env)


def run_code(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` from the checkout, in the job's environment (DATA_DIR in tmp_path)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=mining_env(tmp_path / "data", **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    """Exit ``code`` and, after any log lines, exactly one error line and no traceback."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], result.stderr
    assert lines[-1].startswith("mining: error: ")
    assert text in lines[-1]
    assert "Traceback" not in result.stderr


def test_success_logs_one_line_per_phase_with_counts(tmp_path: Path) -> None:
    dataset = tmp_path / "small.csv"
    dataset.write_text(SMALL + ",orphan\n")
    result = run(
        tmp_path,
        DATASET_URL=dataset,
        MIN_SUPPORT="0.5",
        MIN_CONFIDENCE="0.7",
        MAX_LEN="8",
        MINING_ENGINE="pyfim",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    log = result.stderr
    for phase in (
        "download: not needed, reading",
        "read: 16 rows (1 skipped: empty pid or track_name), 6 playlists, 3 songs",
        "mine: 7 frequent itemsets (in >= 3 of 6 playlists, <= 8 songs, engine pyfim)",
        "rules: 6 rules (confidence >= 0.7)",
        f"write: {(tmp_path / 'data' / RULES_FILENAME).stat().st_size} bytes to",
        "done: 6 rules",
    ):
        assert phase in log
    assert "Traceback" not in log


def test_json_logs_are_one_object_per_line_from_start_to_error(tmp_path: Path) -> None:
    dataset = tmp_path / "small.csv"
    dataset.write_text(SMALL)
    done = run(
        tmp_path, DATASET_URL=dataset, MIN_SUPPORT="0.5", MINING_ENGINE="pyfim", LOG_FORMAT="json"
    )
    assert done.returncode == 0, done.stderr
    records = json_records(done.stderr)
    assert {record["logger"] for record in records} == {"mining"}
    assert {record["level"] for record in records} == {"INFO"}
    assert records[-1]["message"].startswith("done: 6 rules in ")
    # Errors before the settings are read, and after, are records too.
    for env, code, text in [
        ({"MAX_LEN": "1"}, 2, "MAX_LEN='1' must be a whole number from 2 to"),
        ({"DATASET_URL": str(tmp_path / "missing.csv")}, 4, "missing.csv"),
    ]:
        failed = run(tmp_path, LOG_FORMAT="json", MINING_ENGINE="pyfim", **env)
        assert failed.returncode == code, failed.stderr
        *_, last = json_records(failed.stderr)
        assert (last["level"], last["logger"]) == ("ERROR", "mining")
        assert text in last["message"]


def test_a_bug_is_logged_with_its_traceback_as_one_json_field(tmp_path: Path) -> None:
    code = (
        "import sys, mining.__main__ as job\n"
        "def broken(settings): raise ZeroDivisionError('a bug')\n"
        "job.run_job = broken\n"
        "sys.exit(job.main([]))"
    )
    result = run_code(tmp_path, code, LOG_FORMAT="json")
    assert result.returncode == 1
    (record,) = json_records(result.stderr)
    assert record["message"] == "unexpected error (a bug)"
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert record["exception"].endswith("ZeroDivisionError: a bug")


def test_a_bad_log_format_is_a_configuration_error(tmp_path: Path) -> None:
    assert_one_line_error(
        run(tmp_path, LOG_FORMAT="xml"), 2, "LOG_FORMAT='xml' must be one of text, json"
    )


def test_help_and_unexpected_arguments(tmp_path: Path) -> None:
    shown = run(tmp_path, "--help")
    assert shown.returncode == 0
    assert "MIN_SUPPORT" in shown.stdout and "Exit codes" in shown.stdout
    assert_one_line_error(run(tmp_path, "data.csv"), 2, "unexpected argument 'data.csv'")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MIN_SUPPORT", "lots"),
        ("MAX_LEN", "1"),
        ("MINING_ENGINE", "flink"),
        ("MAX_DOWNLOAD_SIZE", "lots"),
        ("MAX_INPUT_SIZE", "0"),
        ("MAX_INPUT_SIZE", "12 parsecs"),
        ("ALLOW_EMPTY_RULES", "maybe"),
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    assert_one_line_error(run(tmp_path, **{variable: value}), 2, f"{variable}=")
    assert not (tmp_path / "data").exists()


def test_pyfim_engine_without_pyfim_installed_is_a_configuration_error(tmp_path: Path) -> None:
    # sys.modules[name] = None is how Python marks a module as not importable.
    code = (
        "import sys; sys.modules['fim'] = None; from mining.__main__ import main; sys.exit(main())"
    )
    result = run_code(tmp_path, code, MINING_ENGINE="pyfim")
    assert_one_line_error(result, 2, "playlist-recommender[fast]")


# Every kind of bad input is covered in test_reader.py; here, that such input exits 3.
BAD_INPUTS = [
    (b"", "the file is empty"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xfe\x00garbage", "not readable as CSV"),
]


@pytest.mark.slow
def test_bad_input_exits_3_and_keeps_the_previous_rules(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(SMALL)
    assert run(tmp_path, DATASET_URL=good, MIN_SUPPORT="0.5", MINING_ENGINE="pyfim").returncode == 0
    data = tmp_path / "data"
    before = {name: (data / name).read_bytes() for name in (RULES_FILENAME, CHECKPOINT_FILENAME)}
    for i, (content, text) in enumerate(BAD_INPUTS):
        bad = tmp_path / f"bad-{i}.csv.gz"
        bad.write_bytes(content)
        assert_one_line_error(run(tmp_path, DATASET_URL=bad, MINING_ENGINE="pyfim"), 3, text)
        assert {name: (data / name).read_bytes() for name in before} == before


def test_a_missing_file_exits_4(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "playlists.csv"
    assert_one_line_error(run(tmp_path, DATASET_URL=missing.as_uri()), 4, "not found")


def test_a_url_that_answers_404_exits_4_without_showing_its_password(tmp_path: Path) -> None:
    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such playlists")

    with serving(not_found) as base:
        url = base.replace("//", "//reader:s3cret-Pa55@") + "/playlists.csv"
        result = run(tmp_path, DATASET_URL=url)
    assert_one_line_error(result, 4, "HTTP 404 Not Found for http://reader:***@127.0.0.1:")
    assert "s3cret-Pa55" not in result.stderr


def test_an_unusable_data_dir_exits_5(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    result = run(tmp_path, DATA_DIR=tmp_path / "a-file" / "data")
    assert_one_line_error(result, 5, "cannot use DATA_DIR")


# -- the mining input's limits ---------------------------------------------------------------

ROW_BLOCK = b"".join(b"%d,song %d\n" % (i // 20, i % 300) for i in range(20_000))
# The most the endless dataset sends: an unbounded job is stopped long before (see below).
ENDLESS_CAP = 256 * 1024**2


async def endless_dataset(request: web.Request) -> web.StreamResponse:
    """A CSV streamed without Content-Length (chunked) that does not end."""
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"pid,track_name\n")
    sent = 0
    while sent < ENDLESS_CAP:
        await response.write(ROW_BLOCK)
        sent += len(ROW_BLOCK)
    return response


async def announced_as_huge(request: web.Request) -> web.StreamResponse:
    """A dataset that says it is 10 GiB, then sends a little and stalls."""
    response = web.StreamResponse(headers={"Content-Length": str(10 * 1024**3)})
    await response.prepare(request)
    await response.write(b"pid,track_name\n1,a\n")
    await asyncio.sleep(60)
    return response


def disk_use(directory: Path) -> int:
    """Bytes in the regular files of ``directory`` (0 while it does not exist)."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    total = 0
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


@pytest.mark.slow  # ~3 s: a real download of 4 MiB
def test_an_endless_dataset_stops_at_the_download_limit_with_bounded_disk_use(
    tmp_path: Path,
) -> None:
    limit = 4 * 1024**2
    data = tmp_path / "data"
    with serving(endless_dataset) as base:
        env = mining_env(data, DATASET_URL=f"{base}/playlists.csv", MAX_DOWNLOAD_SIZE="4MiB")
        job = subprocess.Popen(
            capped(sys.executable, "-m", "mining"),
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        most, deadline = 0, time.monotonic() + 60
        while job.poll() is None:
            most = max(most, disk_use(data))
            # A job without a limit is stopped here, so that the test cannot fill the disk.
            if most > 4 * limit or time.monotonic() > deadline:
                job.kill()
            time.sleep(0.002)
        stdout, stderr = job.communicate(timeout=30)
    result = subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)
    assert most <= limit + 4096, f"{most} bytes in DATA_DIR during the download"
    assert_one_line_error(result, 3, "is larger than the download limit of 4 MiB")
    assert "raise MAX_DOWNLOAD_SIZE" in result.stderr
    assert disk_use(data) == 0, "nothing of the download is kept"


def test_a_dataset_announced_over_the_limit_is_not_downloaded(tmp_path: Path) -> None:
    with serving(announced_as_huge) as base:
        started = time.monotonic()
        result = run(tmp_path, DATASET_URL=f"{base}/playlists.csv", MAX_DOWNLOAD_SIZE="4MiB")
        seconds = time.monotonic() - started
    assert_one_line_error(
        result, 3, "is 10737418240 bytes, larger than the download limit of 4 MiB: not downloaded"
    )
    # Refused on the headers: no retry, no waiting for the stalled body (the timeout is 30 s).
    assert seconds < 20
    assert disk_use(tmp_path / "data") == 0


def test_a_compressed_dataset_stops_at_the_input_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.csv.gz"
    rows = b"1,the same song\n" * 65536  # 1 MiB
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip stream
    with open(bomb, "wb") as f:
        f.write(compressor.compress(b"pid,track_name\n"))
        for _ in range(64):
            f.write(compressor.compress(rows))
        f.write(compressor.flush())
    assert bomb.stat().st_size < 256 * 1024  # 64 MiB of rows
    result = run(tmp_path, DATASET_URL=bomb, MAX_INPUT_SIZE="8MiB", MINING_ENGINE="pyfim")
    assert_one_line_error(result, 3, "more than 8 MiB of CSV text (after decompression)")
    assert not (tmp_path / "data" / CHECKPOINT_FILENAME).exists()


@pytest.mark.slow  # ~5 s: 700 MiB of CSV decompressed until memory runs out
def test_running_out_of_memory_while_reading_is_one_line(tmp_path: Path) -> None:
    rows = b"".join(b"%d,%s %d\n" % (i // 20, b"n" * 200, i % 100) for i in range(10_000))
    bomb = tmp_path / "bomb.csv.gz"
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(bomb, "wb") as f:
        f.write(compressor.compress(b"pid,track_name\n"))
        for _ in range(700 * 1024**2 // len(rows)):
            f.write(compressor.compress(rows))
        f.write(compressor.flush())
    # 800 MiB of address space: enough to mine the bundled sample, not to hold 700 MiB of rows
    # (fewer malloc arenas, so that the space goes to data, not to per-thread reservations).
    env = mining_env(
        tmp_path / "data", DATASET_URL=bomb, MAX_INPUT_SIZE="1GiB", MALLOC_ARENA_MAX="2"
    )
    result = subprocess.run(
        capped(sys.executable, "-m", "mining", address_space=800 * 1024**2),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert_one_line_error(result, 3, "not enough memory to read the dataset")


# -- what errors show of the input, and inputs that are not what they seem -------------------


def test_a_file_that_is_not_a_dataset_is_not_shown(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(
        "root:$6$Jx8e3Lm0$Qw3rTy7uI9oPaSdFgHjKlZxCvBnM1234567890abcdef:19700:0:99999:7:::\n"
        "daemon:*:19700:0:99999:7:::\n"
    )
    result = run(tmp_path, DATASET_URL=shadow.as_uri())
    assert_one_line_error(result, 3, "found 1 column, none named like a CSV column")
    assert "$6$" not in result.stderr and "Qw3rTy" not in result.stderr


def test_an_unbalanced_quote_exits_3_instead_of_merging_rows(tmp_path: Path) -> None:
    rows = 'pid,track_name\n1,a\n1,"b\n2,c\n2,d\n3,e\n3,f"x\n4,g\n4,h\n5,i\n'
    dataset = tmp_path / "quote.csv"
    dataset.write_text(rows)
    result = run(tmp_path, DATASET_URL=dataset, MIN_SUPPORT="0.2", MINING_ENGINE="pyfim")
    assert_one_line_error(result, 3, "row 2 after the header: its 'track_name' value spans lines")


@pytest.mark.slow
def test_zero_rules_exit_3_keeping_the_previous_rules_unless_allowed(tmp_path: Path) -> None:
    good, lonely = tmp_path / "small.csv", tmp_path / "lonely.csv"
    good.write_text(SMALL)
    # No two songs share a playlist: no rule at any support.
    lonely.write_text("pid,track_name\n1,a\n2,b\n3,c\n")
    env = {"MINING_ENGINE": "pyfim"}
    assert run(tmp_path, DATASET_URL=good, MIN_SUPPORT="0.5", **env).returncode == 0
    data = tmp_path / "data"
    before = {name: (data / name).read_bytes() for name in (RULES_FILENAME, CHECKPOINT_FILENAME)}
    refused = run(tmp_path, DATASET_URL=lonely, MIN_SUPPORT="0.3", **env)
    assert_one_line_error(refused, 3, "the dataset gives 0 rules with min_support=0.3")
    assert "stay in place" in refused.stderr and "ALLOW_EMPTY_RULES=1" in refused.stderr
    assert {name: (data / name).read_bytes() for name in before} == before

    allowed = run(tmp_path, DATASET_URL=lonely, MIN_SUPPORT="0.3", ALLOW_EMPTY_RULES="1", **env)
    assert allowed.returncode == 0, allowed.stderr
    assert "done: 0 rules" in allowed.stderr
