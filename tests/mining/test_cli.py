"""``python -m mining`` as users run it: exit codes, one-line errors, a log line per phase."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiohttp import web

from mining.checkpoint import CHECKPOINT_FILENAME
from mining.rulesfile import RULES_FILENAME
from tests.helpers.logs import json_records
from tests.helpers.processes import REPO, mining_env, run_mining

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
    result = run(tmp_path, DATASET_URL=dataset, MIN_SUPPORT="0.5", MINING_ENGINE="pyfim")
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
        ({"MAX_LEN": "1"}, 2, "MAX_LEN='1' must be at least 2"),
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
    assert_one_line_error(run(tmp_path, LOG_FORMAT="xml"), 2, "LOG_FORMAT='xml' must be text")


def test_help_and_unexpected_arguments(tmp_path: Path) -> None:
    shown = run(tmp_path, "--help")
    assert shown.returncode == 0
    assert "MIN_SUPPORT" in shown.stdout and "Exit codes" in shown.stdout
    assert_one_line_error(run(tmp_path, "data.csv"), 2, "unexpected argument 'data.csv'")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MIN_SUPPORT", "lots"), ("MAX_LEN", "1"), ("MINING_ENGINE", "spark")],
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


def test_a_url_that_answers_404_exits_4(tmp_path: Path) -> None:
    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such playlists")

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/{tail:.*}", not_found)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/playlists.csv"
        assert_one_line_error(run(tmp_path, DATASET_URL=url), 4, "404")
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_an_unusable_data_dir_exits_5(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    result = run(tmp_path, DATA_DIR=tmp_path / "a-file" / "data")
    assert_one_line_error(result, 5, "cannot use DATA_DIR")
