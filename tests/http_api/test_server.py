"""`python -m http_api` end to end: a real subprocess on a free loopback port, rules written by
the real miner (or atomically by the test, the way the miner commits them), real signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import gzip
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import cbor2
import pytest

from actors import bind_listener
from http_api.settings import Settings
from mining.atomicfile import atomic_write_bytes
from mining.checkpoint import (
    CHECKPOINT_FILENAME,
    format_model_date,
    read_checkpoint,
    write_checkpoint,
)
from mining.datadir import generation_filename
from mining.rulesfile import RULES_FILENAME, encode_rules, read_rules_header, write_rules
from recommender.engine import DEFAULT_RANKING
from tests.helpers.bombs import gzip_bomb
from tests.helpers.load import generate_load
from tests.helpers.logs import json_records
from tests.helpers.processes import REPO, capped, mine, stop, wait_until
from tests.helpers.rawhttp import exchange, port_of
from tests.helpers.rules import (
    FIRST_NS,
    checkpoint_of,
    regenerated,
    small_ruleset,
    synthetic_ruleset,
    write_model,
)

BODY = {"songs": ["Hey Jude"]}
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


@dataclass
class Server:
    """A running ``python -m http_api`` and the log lines it wrote (with arrival times)."""

    process: asyncio.subprocess.Process
    lines: list[tuple[float, str]] = field(default_factory=list)
    url: str = ""

    def log(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def logged(self, text: str) -> list[str]:
        return [line for _, line in self.lines if text in line]

    def logged_at(self, text: str) -> float:
        """The server's own wall-clock timestamp of the first log line containing ``text``."""
        [line, *_] = self.logged(text)
        stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        return stamp.timestamp()

    async def get(self, path: str) -> tuple[int, dict[str, object], dict[str, str]]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            return response.status, await response.json(), dict(response.headers)

    async def recommend(self) -> tuple[int, dict[str, object], dict[str, str]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/api/recommend", json=BODY) as response,
        ):
            return response.status, await response.json(), dict(response.headers)


def server_env(data_dir: Path, **env: str) -> dict[str, str]:
    return {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": "0",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        "DRAIN_SECONDS": "0",
        "SHUTDOWN_TIMEOUT_SECONDS": "2",
        "CHECKPOINT_POLL_SECONDS": "1",
        **env,
    }


def run_to_exit(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m http_api ARGS`` that is expected to exit by itself (a usage or setting
    error); its status and output."""
    return subprocess.run(
        [sys.executable, "-m", "http_api", *args],
        cwd=REPO,
        env=server_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[..., asyncio.Future[Server]]]:
    """Start ``python -m http_api`` subprocesses; any still running at teardown is stopped."""
    servers: list[Server] = []
    readers: list[asyncio.Task[None]] = []

    async def read_lines(server: Server) -> None:
        assert server.process.stderr is not None
        async for raw in server.process.stderr:
            server.lines.append((time.time(), raw.decode(errors="replace").rstrip("\n")))

    async def start(data_dir: Path, *prefix: str, nofile: int | None = None, **env: str) -> Server:
        """Start the server (``prefix``: a command that runs it, such as a resource limit;
        ``nofile``: its descriptor limit)."""
        limit = [*prefix] + ([] if nofile is None else ["prlimit", f"--nofile={nofile}:{nofile}"])
        process = await asyncio.create_subprocess_exec(
            *limit,
            sys.executable,
            "-m",
            "http_api",
            cwd=REPO,
            env=server_env(data_dir, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        server = Server(process)
        servers.append(server)
        readers.append(asyncio.create_task(read_lines(server)))
        deadline = time.monotonic() + 30
        while not (found := [LISTENING.search(line) for _, line in server.lines]) or not any(found):
            assert process.returncode is None, server.log()
            assert time.monotonic() < deadline, server.log()
            await asyncio.sleep(0.02)
        port = next(m for m in found if m).group(1)
        server.url = f"http://127.0.0.1:{port}"
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        await stop(server.process, grace=30)
    await asyncio.gather(*readers)


def checkpoint_written_at(data_dir: Path) -> float:
    return (data_dir / CHECKPOINT_FILENAME).stat().st_mtime


# -- configuration and start-up ------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PORT", "http", "http_api: error: PORT='http' must be a whole number from 0 to 65535"),
        ("DRAIN_SECONDS", "-1", "http_api: error: DRAIN_SECONDS='-1' must be a number from 0 to"),
        ("WATCHER", "fanotify", "http_api: error: WATCHER='fanotify' must be one of auto, inotify"),
        ("LOG_FORMAT", "xml", "http_api: error: LOG_FORMAT='xml' must be one of text, json"),
        ("ACCESS_LOG", "maybe", "http_api: error: ACCESS_LOG='maybe' must be 1 or 0"),
        ("RANKING", "max", "http_api: error: RANKING='max' must be one of best, sum"),
        (
            "RELOAD_PRIORITY",
            "high",
            "http_api: error: RELOAD_PRIORITY='high' must be one of idle, normal",
        ),
        ("RELOAD_CPU_SHARE", "1", "http_api: error: RELOAD_CPU_SHARE='1' must be a number from 0"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_status_2(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = run_to_exit(tmp_path, **{variable: value})
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


def test_with_json_logs_a_bad_setting_is_one_json_record(tmp_path: Path) -> None:
    result = run_to_exit(tmp_path, PORT="http", LOG_FORMAT="json")
    assert result.returncode == 2
    (record,) = json_records(result.stderr)
    assert (record["level"], record["logger"]) == ("ERROR", "http_api")
    assert record["message"] == "PORT='http' must be a whole number from 0 to 65535"


def test_ranking_is_read_from_the_environment_and_defaults_to_the_one_constant() -> None:
    assert Settings.from_env({}).ranking == Settings().ranking == DEFAULT_RANKING == "sum"
    assert Settings.from_env({"RANKING": " BEST "}).ranking == "best"
    assert Settings.from_env({"RANKING": ""}).ranking == DEFAULT_RANKING


def test_reload_priority_and_share_reach_the_actors() -> None:
    default = Settings.from_env({}).for_actors()
    assert (default.reload_priority, default.reload_cpu_share) == ("idle", 0.2)
    told = Settings.from_env({"RELOAD_PRIORITY": "Normal", "RELOAD_CPU_SHARE": "0"})
    assert (told.for_actors().reload_priority, told.for_actors().reload_cpu_share) == ("normal", 0)


# Frees 45 of 50 two-MiB arrays, keeping every tenth, after a freed 16 MiB mapping has raised
# glibc's mmap threshold; prints how many MiB stay resident.
HOLES = r"""
import re, sys
from pathlib import Path
import numpy as np
from http_api.__main__ import return_freed_memory_at_once
if sys.argv[1] == "set":
    return_freed_memory_at_once()
def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
mapped = np.ones(16 << 20, dtype=np.uint8)
del mapped
before = rss()
blocks = [np.ones(2 << 20, dtype=np.uint8) for _ in range(50)]
kept = blocks[::10]
del blocks
print((rss() - before) // 1024)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")
def test_the_server_gives_large_freed_blocks_back_to_the_kernel() -> None:
    # Without the setting, freed index arrays of one build stay resident (holes in the heap);
    # with it each has its own mapping, unmapped when freed. Side by side, same process kind.
    resident = {}
    for mode in ("default", "set"):
        result = subprocess.run(
            [sys.executable, "-c", HOLES, mode],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        resident[mode] = int(result.stdout)
    assert resident["default"] >= 60, resident
    assert resident["set"] <= 30, resident


def test_help_lists_every_variable_and_an_argument_is_refused(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_to_exit(tmp_path, *args)

    helped = run("--help")
    assert helped.returncode == 0
    for setting in dataclasses.fields(Settings):
        assert f"  {setting.name.upper()} " in helped.stdout
    refused = run("--port", "8080")
    assert refused.returncode == 2
    assert refused.stderr == (
        "http_api: error: unexpected argument '--port': the server is configured through "
        "environment variables (see python -m http_api --help)\n"
    )


def test_a_port_in_use_is_one_line_and_status_1(tmp_path: Path) -> None:
    with bind_listener("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        result = run_to_exit(tmp_path, PORT=str(port))
    assert result.returncode == 1
    assert result.stderr == (
        f"http_api: error: cannot listen on HOST=127.0.0.1 PORT={port}: Address already in use\n"
    )


@pytest.mark.slow
async def test_empty_data_dir_holds_requests_until_the_miner_writes_rules(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    server = await start_server(tmp_path, RULES_WAIT_SECONDS="60")
    assert (await server.get("/healthz"))[0] == 200
    assert (await server.get("/readyz"))[0] == 503
    held = asyncio.create_task(server.recommend())
    await asyncio.sleep(0.3)
    assert not held.done()

    ready = asyncio.create_task(
        wait_until(lambda: _status_is(server, "/readyz", 200), 60, "/readyz 200")
    )
    await asyncio.to_thread(mine, tmp_path)
    ready_at = await ready
    assert ready_at - checkpoint_written_at(tmp_path) < 1.0

    status, body, _ = await held
    assert status == 200
    assert body["model_date"] == read_checkpoint(tmp_path / CHECKPOINT_FILENAME).model_date
    assert isinstance(body["songs"], list) and len(body["songs"]) == 10
    rules = read_rules_header(tmp_path / RULES_FILENAME).rule_count
    assert server.logged(f"loaded {rules} rules over")


async def _status_is(server: Server, path: str, status: int) -> bool:
    try:
        return (await server.get(path))[0] == status
    except aiohttp.ClientError:
        return False


async def test_no_rules_within_the_wait_budget_is_503_with_retry_after(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    server = await start_server(tmp_path, RULES_WAIT_SECONDS="0.5")
    started = time.monotonic()
    status, body, headers = await server.recommend()
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert "no rules loaded yet" in str(body["error"])
    assert 0.45 <= time.monotonic() - started < 5


async def test_data_dir_missing_at_start_is_served_once_created(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    data_dir = tmp_path / "later"
    server = await start_server(data_dir)
    assert (await server.get("/healthz"))[0] == 200
    write_model(data_dir, small_ruleset())
    await wait_until(lambda: _status_is(server, "/readyz", 200), 5, "/readyz 200")
    assert server.logged("does not exist (yet)")


async def test_json_logs_and_the_access_log_from_start_to_exit(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    write_model(tmp_path, small_ruleset())
    server = await start_server(tmp_path, LOG_FORMAT="json", ACCESS_LOG="1")
    await wait_until(lambda: _status_is(server, "/readyz", 200), 30, "/readyz 200")
    agent = 'tester "quoted" \\ 1.0'
    async with aiohttp.ClientSession(headers={"User-Agent": agent}) as session:
        async with session.post(f"{server.url}/api/recommend", json=BODY) as response:
            assert response.status == 200
            size = len(await response.read())
        async with session.get(f"{server.url}/nowhere?x=1") as response:
            assert response.status == 404
    await wait_until(lambda: server.logged("/nowhere"), 10, "the access log of the 404")
    await stop(server.process, grace=30)
    await wait_until(lambda: server.logged("exiting with status 0"), 10, "the last line")

    records = json_records(server.log())
    assert {"actors.supervisor", "actors.rule_server", "http_api"} <= {r["logger"] for r in records}
    access = {r["path"]: r for r in records if r["logger"] == "http_api.access"}
    posted = access["/api/recommend"]
    assert posted["method"] == "POST"
    assert (posted["status"], posted["protocol"]) == (200, "HTTP/1.1")
    assert size < posted["bytes"] < size + 400  # the bytes written, headers included
    assert (posted["remote"], posted["user_agent"]) == ("127.0.0.1", agent)
    assert 0 < posted["duration_seconds"] < 5
    assert posted["message"].startswith('127.0.0.1 "POST /api/recommend HTTP/1.1" 200 ')
    assert (access["/nowhere?x=1"]["method"], access["/nowhere?x=1"]["status"]) == ("GET", 404)


async def test_the_access_log_is_off_by_default_and_one_text_line_per_request_when_on(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    write_model(tmp_path, small_ruleset())
    quiet = await start_server(tmp_path)
    loud = await start_server(tmp_path, ACCESS_LOG="1")
    for server in (quiet, loud):
        await wait_until(functools.partial(_status_is, server, "/readyz", 200), 30, "/readyz 200")
        assert (await server.recommend())[0] == 200
    line = re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO http_api\.access: 127\.0\.0\.1 "
        r'"POST /api/recommend HTTP/1\.1" 200 \d+ \d+\.\d{6} s "Python/3\.\d+ aiohttp/[\d.]+"$'
    )
    await wait_until(lambda: loud.logged("POST /api/recommend"), 10, "the access log line")
    (logged,) = loud.logged("POST /api/recommend")
    assert line.match(logged), logged
    # The quiet server answered the same requests (readyz polls included) without a line.
    assert quiet.logged("http_api.access") == []


# -- reloads under load --------------------------------------------------------------------


@pytest.mark.slow  # 4-5 s each (11-14 s on a busy machine): the miner runs twice, once under load
@pytest.mark.parametrize(("watcher", "budget"), [("auto", 1.0), ("polling", 1.0 + 1.0)])
async def test_new_rules_from_the_miner_are_served_under_load_without_a_failure(
    tmp_path: Path,
    start_server: Callable[..., asyncio.Future[Server]],
    watcher: str,
    budget: float,
) -> None:
    mine(tmp_path)
    first = read_checkpoint(tmp_path / CHECKPOINT_FILENAME)
    server = await start_server(tmp_path, WATCHER=watcher, CHECKPOINT_POLL_SECONDS="1")
    await wait_until(lambda: _status_is(server, "/readyz", 200), 10, "/readyz 200")
    stop = asyncio.Event()
    body = {"songs": ["Wonderful", "Hey Jude"]}
    load = asyncio.create_task(
        generate_load(f"{server.url}/api/recommend", stop, bodies=[body], max_seconds=60)
    )
    await asyncio.sleep(0.5)
    # Other parameters: the miner mines again and commits a new checkpoint.
    await asyncio.to_thread(mine, tmp_path, MIN_CONFIDENCE="0.75")
    second = read_checkpoint(tmp_path / CHECKPOINT_FILENAME)
    assert second.generated_ns != first.generated_ns
    await asyncio.sleep(budget + 0.5)
    stop.set()
    result = await load

    assert result.failed() == []
    served_at = result.first_served(second.model_date)
    assert served_at is not None
    assert served_at - checkpoint_written_at(tmp_path) < budget
    assert {o.model_date for o in result.outcomes} == {first.model_date, second.model_date}
    if watcher == "polling":
        assert server.logged("with polling")


@pytest.mark.slow
async def test_a_large_rule_set_is_swapped_under_load_without_a_failure(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    large = synthetic_ruleset(300_000)
    write_model(tmp_path, large)
    server = await start_server(tmp_path)
    await wait_until(lambda: _status_is(server, "/readyz", 200), 10, "/readyz 200")
    stop = asyncio.Event()
    bodies = [{"songs": [f"song {i:05d}", f"song {i + 7:05d}"]} for i in range(0, 500, 5)]
    load = asyncio.create_task(
        generate_load(f"{server.url}/api/recommend", stop, bodies=bodies, max_seconds=60)
    )
    await asyncio.sleep(0.5)
    second = await asyncio.to_thread(write_model, tmp_path, regenerated(large, FIRST_NS + 1))
    await asyncio.sleep(1.5)
    stop.set()
    result = await load

    assert result.failed() == []
    served_at = result.first_served(second.model_date)
    assert served_at is not None
    assert served_at - checkpoint_written_at(tmp_path) < 1.0
    assert server.logged("loaded 300000 rules over 5000 songs")


def truncated_rules(data_dir: Path, ns: int) -> None:
    data = encode_rules(small_ruleset(ns))
    atomic_write_bytes(data_dir / RULES_FILENAME, data[: len(data) // 2])
    write_model_checkpoint(data_dir, ns)


def garbage_checkpoint(data_dir: Path, ns: int) -> None:
    write_rules(data_dir / RULES_FILENAME, small_ruleset(ns))
    atomic_write_bytes(data_dir / CHECKPOINT_FILENAME, b"garbage, not a checkpoint")


def header_disagreeing_with_checkpoint(data_dir: Path, ns: int) -> None:
    write_rules(data_dir / RULES_FILENAME, small_ruleset(ns))
    write_model_checkpoint(data_dir, ns + 1)


def unknown_format_version(data_dir: Path, ns: int) -> None:
    document = cbor2.loads(encode_rules(small_ruleset(ns)))
    document["format_version"] = 2
    atomic_write_bytes(data_dir / RULES_FILENAME, cbor2.dumps(document))
    write_model_checkpoint(data_dir, ns)


def _replace_with_fifo(path: Path) -> None:
    fifo = path.with_name("fifo")
    os.mkfifo(fifo)
    os.replace(fifo, path)


def fifo_as_checkpoint(data_dir: Path, ns: int) -> None:
    _replace_with_fifo(data_dir / CHECKPOINT_FILENAME)


def fifo_as_rules(data_dir: Path, ns: int) -> None:
    # A new checkpoint whose generation has no file: rules.cbor, now a FIFO, is the one read.
    _replace_with_fifo(data_dir / RULES_FILENAME)
    write_model_checkpoint(data_dir, ns)


def endless_rules(data_dir: Path, ns: int) -> None:
    link = data_dir / "link"
    link.symlink_to("/dev/zero")
    os.replace(link, data_dir / RULES_FILENAME)
    write_model_checkpoint(data_dir, ns)


def data_dir_deleted(data_dir: Path, ns: int) -> None:
    shutil.rmtree(data_dir)


def write_model_checkpoint(data_dir: Path, ns: int) -> None:
    write_checkpoint(data_dir / CHECKPOINT_FILENAME, checkpoint_of(small_ruleset(ns)))


FAULTS = [
    (truncated_rules, "not valid CBOR"),
    (garbage_checkpoint, "checkpoint unusable: checkpoint line must be"),
    (header_disagreeing_with_checkpoint, "does not match the checkpoint"),
    (unknown_format_version, "format version 2 is not supported"),
    (fifo_as_checkpoint, f"{CHECKPOINT_FILENAME}: a FIFO, not a regular file"),
    (fifo_as_rules, f"{RULES_FILENAME}: a FIFO, not a regular file"),
    (endless_rules, f"{RULES_FILENAME}: a character device, not a regular file"),
    (data_dir_deleted, "the checkpoint has gone"),
]


@pytest.mark.slow
async def test_every_fault_is_survived_under_load_and_the_next_good_write_is_served(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    data_dir = tmp_path / "data"
    write_model(data_dir, small_ruleset(FIRST_NS))
    # Capped: a server that read a rules file linked to /dev/zero would grow without end.
    server = await start_server(data_dir, *capped())
    await wait_until(lambda: _status_is(server, "/readyz", 200), 10, "/readyz 200")
    stop = asyncio.Event()
    load = asyncio.create_task(generate_load(f"{server.url}/api/recommend", stop))
    served = format_model_date(FIRST_NS)
    for step, (fault, cause) in enumerate(FAULTS, start=1):
        ns = FIRST_NS + step * 10_000_000_000
        fault(data_dir, ns)
        await wait_until(functools.partial(server.logged, cause), 5, cause)
        status, body, _ = await server.recommend()
        assert (status, body["model_date"]) == (200, served), f"after {fault.__name__}"
        assert (await server.get("/readyz"))[0] == 200
        # Then the miner's next good write is served.
        served = write_model(data_dir, small_ruleset(ns + 5)).model_date
        await wait_until(
            functools.partial(_model_date_is, server, served),
            5,
            f"recovery after {fault.__name__}",
        )
    stop.set()
    result = await load
    assert len(result.outcomes) > 100
    assert result.server_errors() == []
    assert result.failed() == []
    for _, cause in FAULTS[:-1]:
        assert len(server.logged(cause)) == 1, cause  # each failure logged once


async def _model_date_is(server: Server, model_date: str) -> bool:
    status, body, _ = await server.recommend()
    return status == 200 and body["model_date"] == model_date


async def _reload_failures(server: Server) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as got:
        text = await got.text()
    [value] = re.findall(r"^recommender_rule_reload_failures_total (\S+)$", text, re.MULTILINE)
    return float(value)


def without_permission_override() -> tuple[str, ...]:
    """A command prefix under which file permissions apply, even to root (as in the tests here):
    the capabilities that bypass them are dropped."""
    if os.geteuid() != 0:
        return ()
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


@pytest.mark.slow
async def test_a_rules_file_whose_permission_is_fixed_is_loaded_at_once(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    write_model(tmp_path, small_ruleset(FIRST_NS))
    server = await start_server(tmp_path, *without_permission_override())
    await wait_until(lambda: _status_is(server, "/readyz", 200), 10, "/readyz 200")
    # A new model whose rules file the server may not read.
    new = small_ruleset(FIRST_NS + 1_000_000_000)
    generation = tmp_path / generation_filename(new.header.generated_ns)
    write_rules(generation, new)
    generation.chmod(0o000)
    write_checkpoint(tmp_path / CHECKPOINT_FILENAME, checkpoint_of(new))
    await wait_until(functools.partial(server.logged, "Permission denied"), 5, "the failure")
    # Four failed attempts: at once, then 0.5, 1 and 2 s later; the next is due 4 s later.
    fourth_failure_seen = await wait_until(
        lambda: _reload_failures_are(server, 4), 10, "four attempts"
    )
    generation.chmod(0o644)
    new_date = checkpoint_of(new).model_date
    loaded = await wait_until(functools.partial(_model_date_is, server, new_date), 10, "the load")
    # Loaded on the change itself (an inotify attribute event, or the periodic check), well
    # before the backoff timer's next attempt, due 4 s after the fourth failure.
    assert loaded - fourth_failure_seen < 4.0 / 2
    assert len(server.logged("Permission denied")) == 1


async def _reload_failures_are(server: Server, count: float) -> bool:
    return await _reload_failures(server) >= count


# -- shutdown ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_sigterm_under_load_drains_finishes_requests_and_exits_0(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    write_model(tmp_path, small_ruleset())
    server = await start_server(tmp_path, DRAIN_SECONDS="1.5", SHUTDOWN_TIMEOUT_SECONDS="10")
    await wait_until(lambda: _status_is(server, "/readyz", 200), 10, "/readyz 200")
    stop = asyncio.Event()
    load = asyncio.create_task(generate_load(f"{server.url}/api/recommend", stop, workers=8))
    await asyncio.sleep(0.5)

    sent = time.time()
    server.process.send_signal(signal.SIGTERM)
    not_ready_at = await wait_until(lambda: _status_is(server, "/readyz", 503), 2, "readyz 503")
    assert not_ready_at - sent < 0.5
    status, _, headers = await server.recommend()
    assert status == 200 and headers["Connection"] == "close"

    code = await asyncio.wait_for(server.process.wait(), 20)
    exited = time.time()
    stop.set()
    result = await load
    assert code == 0
    # It exited by itself, so no non-daemon thread was left; and soon after the drain: no
    # connection was left hanging until the shutdown timeout (10 s).
    assert exited - sent < 1.5 + 3
    drain_over = server.logged_at("drain over")
    assert 1.4 <= drain_over - sent <= 3.0
    # A connection made in the last instant before the listener closes can be reset by the
    # kernel before the server could accept it: that race is ~1 ms wide, allow 50.
    before_end = [o for o in result.outcomes if o.started < drain_over - 0.05]
    assert len(before_end) > 100
    assert [o for o in before_end if not o.ok] == []
    assert result.server_errors() == []
    for text in ("SIGTERM: draining for 1.5 s", "drain over", "exiting with status 0"):
        assert server.logged(text), text


async def test_sigint_stops_at_once_without_a_drain_and_exits_0(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    # Ctrl-C at a terminal: nothing balances load, so the 30 s drain SIGTERM would give is skipped.
    write_model(tmp_path, small_ruleset())
    server = await start_server(tmp_path, DRAIN_SECONDS="30", SHUTDOWN_TIMEOUT_SECONDS="10")
    await wait_until(lambda: _status_is(server, "/readyz", 200), 10, "/readyz 200")
    sent = time.monotonic()
    server.process.send_signal(signal.SIGINT)
    code = await asyncio.wait_for(server.process.wait(), 40)
    assert code == 0
    assert time.monotonic() - sent < 30 / 3
    assert server.logged("SIGINT: stopping without a drain")
    assert not server.logged("draining for")
    assert server.logged("exiting with status 0")


# -- hostile clients -----------------------------------------------------------------------

HEALTHZ_ONCE = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


async def _healthz_seconds(port: int, bound: float) -> float:
    """Seconds a fresh connection takes to get /healthz answered (``bound`` if it does not)."""
    started = time.monotonic()
    try:
        reply = await exchange(port, HEALTHZ_ONCE, timeout=bound)
    except (TimeoutError, OSError):
        return bound
    return time.monotonic() - started if reply.status == 200 else bound


async def _hold_silent_connections(
    port: int, count: int, stop: asyncio.Event, max_opened: int = 3000
) -> int:
    """Keep ``count`` connections open that never send a byte, replacing each the server
    closes, until ``stop`` (or ``max_opened`` in all); how many were opened."""
    loop = asyncio.get_running_loop()
    held: list[socket.socket] = []
    opened = 0
    try:
        while not stop.is_set() and opened < max_opened:
            for sock in [s for s in held if _closed_by_peer(s)]:
                held.remove(sock)
                sock.close()
            while len(held) < count and opened < max_opened:
                sock = socket.socket()
                sock.setblocking(False)
                # The kernel completes the handshake even for one the server has not accepted.
                await loop.sock_connect(sock, ("127.0.0.1", port))
                held.append(sock)
                opened += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        for sock in held:
            sock.close()
    return opened


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.parametrize(
    ("max_connections", "at_cap", "accept_errors"),
    # At 250 the cap may be reached too, or not before accept() fails: one line each at most.
    [("auto", (1, 1), 0), ("250", (0, 1), 1)],
    ids=["cap below the limit", "cap at the limit: accept fails"],
)
@pytest.mark.slow
async def test_300_silent_connections_under_ulimit_256_never_lock_out_healthz(
    tmp_path: Path,
    start_server: Callable[..., asyncio.Future[Server]],
    max_connections: str,
    at_cap: tuple[int, int],
    accept_errors: int,
) -> None:
    write_model(tmp_path, small_ruleset())
    server = await start_server(tmp_path, nofile=256, MAX_CONNECTIONS=max_connections)
    await wait_until(lambda: _status_is(server, "/readyz", 200), 10, "/readyz 200")
    port = port_of(server.url)
    stop_holding = asyncio.Event()
    holder = asyncio.create_task(_hold_silent_connections(port, 300, stop_holding))
    timings = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        timings.append(await _healthz_seconds(port, bound=1.0))
        await asyncio.sleep(0.1)
    stop_holding.set()
    opened = await holder

    # Shown with pytest -s (docs/reliability-http.md quotes it).
    print(
        f"silent connections ({max_connections}): {opened} opened, /healthz worst "
        f"{max(timings) * 1000:.0f} ms of {len(timings)}, {len(server.lines)} log lines"
    )
    assert opened >= 300
    assert len(timings) >= 10
    assert max(timings) < 1.0, timings
    assert len(server.lines) < 100, server.log()
    assert at_cap[0] <= len(server.logged("at the connection cap")) <= at_cap[1], server.log()
    assert len(server.logged("cannot accept connections")) == accept_errors, server.log()
    assert "Traceback" not in server.log()


GZIP_BOMB_MIB = 1000
BUSY_LAG = re.compile(r"event loop lag: .* busy max ([\d.]+) ms")


def test_the_gzip_bomb_is_what_it_claims() -> None:
    bomb = gzip_bomb(8)
    assert len(gzip.decompress(bomb)) == 8 << 20
    assert len(gzip_bomb(GZIP_BOMB_MIB)) < Settings.max_body_bytes


@pytest.mark.slow
async def test_four_gzip_bombs_at_once_get_413_without_holding_the_event_loop(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    write_model(tmp_path, small_ruleset())
    server = await start_server(tmp_path, LOG_LEVEL="DEBUG")
    await wait_until(lambda: _status_is(server, "/readyz", 200), 10, "/readyz 200")
    port = port_of(server.url)
    bomb = gzip_bomb(GZIP_BOMB_MIB)
    request = (
        b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(bomb)
    ) + bomb
    before = len(server.lines)
    done = asyncio.Event()

    async def probe_healthz() -> list[float]:
        timings = []
        while not done.is_set():
            timings.append(await _healthz_seconds(port, bound=30))
            await asyncio.sleep(0.02)
        return timings

    prober = asyncio.create_task(probe_healthz())
    replies = await asyncio.gather(*(exchange(port, request, timeout=60) for _ in range(4)))
    # The server reports its loop lag once a second: wait for the window holding the bombs.
    await asyncio.sleep(2.5)
    done.set()
    healthz = await prober

    for reply in replies:
        assert reply.status == 413
        assert reply.json() == {"error": "request body is larger than 1048576 bytes"}
    busy = [float(m.group(1)) for _, line in server.lines[before:] if (m := BUSY_LAG.search(line))]
    print(
        f"gzip bombs: busy lag max {max(busy, default=float('nan')):.1f} ms, "
        f"/healthz worst {max(healthz) * 1000:.0f} ms of {len(healthz)}"
    )
    assert busy, server.log()
    assert max(busy) <= 50, busy
    assert len(busy) >= 2, server.log()  # the window of the bombs and one after
    # From outside, through a machine shared with other work: generous. Before the fix the
    # bombs were inflated on the loop to be discarded and held /healthz 2.8 s on a quiet machine.
    assert max(healthz) < 2.0, healthz


async def test_a_malformed_request_gets_json_one_log_line_and_a_count_in_metrics(
    tmp_path: Path, start_server: Callable[..., asyncio.Future[Server]]
) -> None:
    server = await start_server(tmp_path)
    port = port_of(server.url)
    for _ in range(5):
        reply = await exchange(port, b"post /api/recommend HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.status == 400
        assert reply.json() == {"error": "malformed request: Invalid method encountered"}
    async with aiohttp.ClientSession() as session, session.get(server.url + "/metrics") as got:
        text = await got.text()
    assert 'http_requests_total{code="400",method="other",route="malformed"} 5.0' in text
    assert len(server.logged("malformed request from 127.0.0.1: 400")) == 1
    assert "Traceback" not in server.log()
