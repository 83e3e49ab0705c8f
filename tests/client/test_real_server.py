"""The client against the real `python -m http_api`, serving rules from `python -m mining`."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import aiohttp
import pytest

from client.record import Sample, format_time, read_samples
from mining.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from mining.version import __version__
from rehearsal.processes import bump_version_source
from tests.helpers.processes import REPO, mine, stop, wait_until

if TYPE_CHECKING:
    from conftest import RunClient, StartClient

PACKAGES = ("actors", "client", "http_api", "mining")
# A song of the bundled sample dataset that has rules.
SONG = "Wonderful"


class RealServer:
    """`python -m http_api` as a subprocess, from the repository or a copy of it."""

    def __init__(self, port: int, data_dir: Path, log_path: Path, source: Path = REPO) -> None:
        self.port = port
        self.data_dir = data_dir
        self.source = source
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def start(self, path: str = "/readyz") -> None:
        """Start the server and wait until ``path`` answers 200 (/readyz: rules are loaded)."""
        self._log = self.log_path.open("ab")
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATA_DIR": str(self.data_dir),
            # A quick stop: these tests time the client, not the drain.
            "DRAIN_SECONDS": "0",
            "SHUTDOWN_TIMEOUT_SECONDS": "1",
            "PYTHONPATH": str(self.source),
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "http_api",
            cwd=self.source,
            env=env,
            stdout=self._log,
            stderr=self._log,
        )
        async with aiohttp.ClientSession() as session:
            await self._ready(session, path)

    async def _ready(self, session: aiohttp.ClientSession, path: str) -> None:
        url = f"http://127.0.0.1:{self.port}{path}"
        async with asyncio.timeout(30):
            while True:
                assert self.process is not None
                if self.process.returncode is not None:
                    pytest.fail(f"server exited: {self.log_path.read_text()}")
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM and wait for the exit."""
        if self.process is not None:
            await stop(self.process, grace=20)
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
async def servers() -> AsyncIterator[list[RealServer]]:
    """Servers the test starts; all stopped at teardown."""
    started: list[RealServer] = []
    try:
        yield started
    finally:
        for server in started:
            await server.stop()


@pytest.fixture(scope="module")
def mined_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rules mined once per module from the bundled sample (mining takes seconds)."""
    data_dir = tmp_path_factory.mktemp("mined") / "ml-data"
    data_dir.mkdir()
    mine(data_dir)
    return data_dir


@pytest.fixture
def mined(mined_once: Path, tmp_path: Path) -> tuple[Path, str]:
    """This test's own DATA_DIR with those rules, and their model_date."""
    data_dir = tmp_path / "ml-data"
    shutil.copytree(mined_once, data_dir)
    return data_dir, read_checkpoint(data_dir / CHECKPOINT_FILENAME).model_date


@pytest.mark.slow
async def test_one_shot_against_the_real_server(
    mined: tuple[Path, str],
    servers: list[RealServer],
    tmp_path: Path,
    run_client: RunClient,
    closed_port: int,
) -> None:
    data_dir, model_date = mined
    server = RealServer(closed_port, data_dir, tmp_path / "server.log")
    servers.append(server)
    await server.start()
    port = str(server.port)

    result = await run_client("127.0.0.1", port, SONG)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        f"Recommendation server v{__version__} with model from {model_date}.",
        "Song recommendations:",
    ]
    songs = lines[2:]
    assert len(songs) == 10  # the server's default limit
    assert all(song.startswith("    ") and song.strip() for song in songs)
    assert SONG not in [song.strip() for song in songs]

    as_json = await run_client("--json", "--url", f"http://127.0.0.1:{port}", SONG)
    reply = json.loads(as_json.stdout)
    assert reply["songs"] == [song.strip() for song in songs]
    assert (reply["version"], reply["model_date"]) == (__version__, model_date)

    # SONG has rules, so at least its first recommendation comes from one.
    assert 1 <= reply["from_rules"] <= 10
    assert reply["unknown"] == []
    assert result.stderr == ""

    unknown = await run_client("127.0.0.1", port, "no such song", "--limit", "3")
    assert unknown.returncode == 0, unknown.stderr
    assert unknown.stderr.splitlines() == [
        'note: not in the model, ignored: "no such song"',
        "note: no rule matched these songs: the recommendations are just the most popular songs",
    ]

    rejected = await run_client("--limit", "1000", "127.0.0.1", port, SONG)
    assert rejected.returncode == 5
    assert rejected.stderr.startswith("error: server rejected the request (400 Bad Request): ")
    assert "limit" in rejected.stderr


@pytest.mark.slow
async def test_with_the_defaults_the_servers_no_rules_answer_reaches_the_user(
    servers: list[RealServer], tmp_path: Path, run_client: RunClient, closed_port: int
) -> None:
    # Both sides at their defaults: the server holds the request RULES_WAIT_SECONDS (5 s), then
    # answers 503; the client's timeout must be longer for the user to read why.
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    server = RealServer(closed_port, data_dir, tmp_path / "server.log")
    servers.append(server)
    await server.start(path="/healthz")

    result = await run_client("127.0.0.1", str(server.port), SONG)
    assert result.returncode == 6, result.stderr
    assert result.stderr == (
        "error: server error (503 Service Unavailable): no rules loaded yet (waited 5 s); "
        "retry later (retry after 5 s)\n"
    )


def copy_with_version(destination: Path, version: str) -> Path:
    """A copy of the source tree whose mining/version.py says `version`."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, destination / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    version_file = destination / "mining" / "version.py"
    version_file.write_text(bump_version_source(version_file.read_text(), version))
    return destination


def csv_samples(path: Path) -> list[Sample]:
    if not path.exists():
        return []
    # The client may be writing the last row right now: drop a partial line.
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return list(read_samples(io.StringIO(complete, newline=""))) if complete else []


@pytest.mark.slow
async def test_continuous_sees_a_restart_with_a_new_version_and_a_new_model(
    mined: tuple[Path, str],
    servers: list[RealServer],
    tmp_path: Path,
    start_client: StartClient,
    closed_port: int,
) -> None:
    data_dir, first_model = mined
    new_version = f"{__version__}+rollout"
    old = RealServer(closed_port, data_dir, tmp_path / "old.log")
    new = RealServer(
        closed_port,
        data_dir,
        tmp_path / "new.log",
        copy_with_version(tmp_path / "src", new_version),
    )
    servers.extend([old, new])
    await old.start()

    output = tmp_path / "rollout.csv"
    client = await start_client(
        "-c", "--interval", "0.05", "--output", str(output), "127.0.0.1", str(old.port), SONG
    )

    def rows() -> list[Sample]:
        return csv_samples(output)

    await wait_until(lambda: len(rows()) >= 3, 20, "three rows from the first server")
    await old.stop()
    await wait_until(lambda: sum(s.failed for s in rows()) >= 3, 20, "three failed requests")
    await new.start()
    await wait_until(lambda: any(s.version == new_version for s in rows()), 20, "the new version")
    # The miner runs in a thread: the client and the server are observed meanwhile.
    second_model = await asyncio.to_thread(mine, data_dir, MIN_SUPPORT="0.03")
    assert second_model != first_model
    await wait_until(lambda: any(s.model_date == second_model for s in rows()), 20, "the new model")

    client.send_signal(signal.SIGINT)
    _, stderr_bytes = await asyncio.wait_for(client.communicate(), 20)
    assert client.returncode == 0
    stderr = stderr_bytes.decode()

    samples = rows()
    versions = [sample.version for sample in samples]
    first_failure = versions.index(None)
    back = versions.index(new_version)
    # Every request has a row: the old version, only failures, then only the new one.
    assert set(versions[:first_failure]) == {__version__}
    assert set(versions[first_failure:back]) == {None}
    assert set(versions[back:]) == {new_version}
    model_switch = [sample.model_date for sample in samples].index(second_model)
    assert model_switch > back
    assert {sample.model_date for sample in samples[back:model_switch]} == {first_model}

    outage = f"{format_time(samples[first_failure].time)} to {format_time(samples[back - 1].time)}"
    assert f"longest failure run: {back - first_failure} failed requests from {outage}" in stderr
    assert f"next success at {format_time(samples[back].time)}" in stderr
    assert (
        f"version {new_version} first seen at {format_time(samples[back].time)} "
        f"(the reply before had {__version__})"
    ) in stderr
    assert (
        f"model_date {second_model} first seen at {format_time(samples[model_switch].time)} "
        f"(the reply before had {first_model})"
    ) in stderr
    # One server at a time: nothing answered with an old value after the new one.
    assert " mixed" not in stderr
    assert f"requests: {len(samples)}, failed: {back - first_failure}, skipped ticks: " in stderr
    assert "Connection refused" in stderr
