"""Continuous mode against a scriptable server: restarts, schedule, signals, files."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import signal
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from client.continuous import ContinuousOptions, measure
from client.recommend import Query, endpoint_from_url, new_session
from client.record import format_time, read_samples
from client.summary import Change, FailureRun, MixedPeriod, Summary
from tests.helpers.processes import wait_until

if TYPE_CHECKING:
    from conftest import FakeServer, RunClient, RunPipeline, StartClient


async def run_measure(
    server: FakeServer,
    options: ContinuousOptions,
    stop: asyncio.Event | None = None,
    timeout: float = 1.0,
) -> tuple[str, str, Summary]:
    """Run the measurement loop in-process; return the CSV, the log and the summary."""
    query = Query(endpoint_from_url(server.url), ("Yellow",), None, timeout)
    out, log = io.StringIO(), io.StringIO()
    logger = logging.getLogger(f"{__name__}.measure")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [logging.StreamHandler(log)]
    async with new_session() as session:
        summary = await measure(
            session,
            query=query,
            options=options,
            out=out,
            log=logger,
            stop=stop or asyncio.Event(),
        )
    return out.getvalue(), log.getvalue(), summary


def times(csv_text: str) -> list[datetime]:
    return [sample.time for sample in read_samples(io.StringIO(csv_text, newline=""))]


async def test_a_restart_with_a_new_version_shows_in_csv_log_and_summary(
    fake_server: FakeServer,
) -> None:
    stop = asyncio.Event()

    async def roll_out() -> None:
        await wait_until(lambda: len(fake_server.bodies) >= 3, 10, "three requests")
        await fake_server.stop()
        await asyncio.sleep(0.3)
        fake_server.version = "2.0.0"
        await fake_server.start()
        restarted_at = len(fake_server.bodies)
        await wait_until(
            lambda: len(fake_server.bodies) >= restarted_at + 3, 10, "three after the restart"
        )
        stop.set()

    options = ContinuousOptions(interval=0.05, count=None, duration=10, changes_only=False)
    csv_text, log, summary = (
        await asyncio.gather(roll_out(), run_measure(fake_server, options, stop))
    )[1]

    samples = list(read_samples(io.StringIO(csv_text, newline="")))
    assert len(samples) == summary.requests == len(fake_server.bodies) + summary.failures
    versions = [sample.version for sample in samples]
    first_failure = versions.index(None)
    recovered = versions.index("2.0.0")
    # Every request is a row: 1.2.3 rows, then only failures, then only 2.0.0.
    assert set(versions[:first_failure]) == {"1.2.3"}
    assert set(versions[first_failure:recovered]) == {None}
    assert set(versions[recovered:]) == {"2.0.0"}
    assert recovered - first_failure == summary.failures >= 3
    assert all(sample.model_date is None for sample in samples if sample.failed)

    run = summary.longest_failure_run
    assert run == FailureRun(
        summary.failures,
        samples[first_failure].time,
        samples[recovered - 1].time,
        samples[recovered].time,
    )
    assert [(c.field, c.old, c.new, c.time) for c in summary.changes] == [
        ("version", "1.2.3", "2.0.0", samples[recovered].time)
    ]
    assert summary.failure_reasons == (
        (f"cannot connect to {fake_server.url}: Connection refused", summary.failures),
    )
    assert log.splitlines()[1:] == [
        f"failing since {samples[first_failure].time.isoformat(timespec='milliseconds')}: "
        f"cannot connect to {fake_server.url}: Connection refused",
        "recovered: " + run.describe(),
        summary.changes[0].describe(),
    ]


async def test_alternating_versions_are_logged_once_and_summarised_as_a_mixed_span(
    fake_server: FakeServer,
) -> None:
    fake_server.version_cycle = ("1.2.3", "2.0.0")
    options = ContinuousOptions(interval=0.01, count=30, duration=None, changes_only=False)
    csv_text, log, summary = await run_measure(fake_server, options)
    samples = list(read_samples(io.StringIO(csv_text, newline="")))
    assert [sample.version for sample in samples] == ["1.2.3", "2.0.0"] * 15
    # 29 flips, but only the first reply, the new version and the start of the mix are logged.
    assert log.splitlines() == [
        f"first reply at {format_time(samples[0].time)}: "
        "v1.2.3 with model from 2026-11-28 19:45:01.123456",
        f"version 2.0.0 first seen at {format_time(samples[1].time)} (the reply before had 1.2.3)",
        f"version mixed: 1.2.3 answered again at {format_time(samples[2].time)}, after 2.0.0 "
        f"was first seen at {format_time(samples[1].time)} "
        "(further alternation is counted, not logged)",
    ]
    assert summary.changes == (Change(samples[1].time, "version", "1.2.3", "2.0.0"),)
    assert summary.mixed == (
        MixedPeriod("version", "2.0.0", samples[1].time, samples[28].time, 14, ("1.2.3",), False),
    )


async def test_the_schedule_does_not_drift(fake_server: FakeServer) -> None:
    options = ContinuousOptions(interval=0.05, count=20, duration=None, changes_only=False)
    csv_text, _, summary = await run_measure(fake_server, options)
    sent = times(csv_text)
    assert summary.requests == len(sent) == 20
    assert summary.skipped_ticks == 0
    # Tick 19 is due 0.95 s after tick 0; a loop that sleeps the interval after
    # each request would be late by 19 request times.
    assert (sent[-1] - sent[0]).total_seconds() == pytest.approx(0.95, abs=0.03)


async def test_slow_replies_skip_ticks_instead_of_piling_up(fake_server: FakeServer) -> None:
    fake_server.delay = 0.25
    options = ContinuousOptions(interval=0.1, count=4, duration=None, changes_only=False)
    csv_text, _, summary = await run_measure(fake_server, options)
    sent = times(csv_text)
    assert fake_server.max_in_flight == 1
    # Each request outlasts 2.5 intervals: the next one goes out at once, the
    # ticks in between are given up: 1 or 2 after each of the first three.
    assert summary.skipped_ticks is not None and 3 <= summary.skipped_ticks <= 6
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(sent)]
    assert all(0.25 <= gap < 0.35 for gap in gaps), gaps


async def test_timeouts_are_failures_with_their_reason(fake_server: FakeServer) -> None:
    fake_server.delay = 1
    options = ContinuousOptions(interval=0.05, count=2, duration=None, changes_only=False)
    csv_text, _, summary = await run_measure(fake_server, options, timeout=0.1)
    assert [sample.failed for sample in read_samples(io.StringIO(csv_text, newline=""))] == [
        True,
        True,
    ]
    assert summary.failure_reasons == ((f"no reply from {fake_server.url} within 0.1 s", 2),)
    assert summary.longest_failure_run is not None
    assert summary.longest_failure_run.recovered_at is None


async def test_changes_only_writes_fewer_rows_but_summarises_every_request(
    fake_server: FakeServer,
) -> None:
    stop = asyncio.Event()

    async def new_model() -> None:
        await wait_until(lambda: len(fake_server.bodies) >= 5, 10, "five requests")
        fake_server.model_date = "2026-12-01 00:00:00.000000"
        await wait_until(lambda: len(fake_server.bodies) >= 10, 10, "ten requests")
        stop.set()

    options = ContinuousOptions(interval=0.02, count=None, duration=10, changes_only=True)
    csv_text, _, summary = (
        await asyncio.gather(new_model(), run_measure(fake_server, options, stop))
    )[1]
    rows = list(read_samples(io.StringIO(csv_text, newline="")))
    assert summary.requests >= 10
    assert [(c.field, c.new) for c in summary.changes] == [
        ("model_date", "2026-12-01 00:00:00.000000")
    ]
    # The first row and the row of the change are always among the kept ones.
    assert rows[0].model_date == "2026-11-28 19:45:01.123456"
    assert summary.changes[0].time in [row.time for row in rows]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_ends_the_run_with_the_summary_and_rows_are_flushed(
    fake_server: FakeServer, start_client: StartClient, tmp_path: Path, signum: signal.Signals
) -> None:
    output = tmp_path / "run.csv"
    process = await start_client(
        "-c", "--interval", "0.05", "--output", str(output), "127.0.0.1",
        str(fake_server.port), "Yellow",
    )  # fmt: skip
    # Rows reach the file while the client still runs: each one is flushed.
    await wait_until(
        lambda: output.exists() and len(output.read_text().splitlines()) >= 4,
        10,
        "four lines in the CSV file",
    )
    assert process.returncode is None
    process.send_signal(signum)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0
    assert stdout == b""
    rows = output.read_text().splitlines()
    assert rows[0] == "time,response_time,version,model_date"
    log = stderr.decode().splitlines()
    assert log[0].startswith("first reply at ")
    assert log[0].endswith(": v1.2.3 with model from 2026-11-28 19:45:01.123456")
    assert log[1] == "--- summary ---"
    assert log[2] == f"requests: {len(rows) - 1}, failed: 0, skipped ticks: 0"
    assert log[-1] == "no version or model_date change"


@pytest.mark.slow
async def test_duration_ends_the_run_and_csv_goes_to_stdout(
    fake_server: FakeServer, run_client: RunClient
) -> None:
    result = await run_client(
        "--continuous", "--interval", "0.1", "--duration", "0.5", "127.0.0.1",
        str(fake_server.port), "Yellow",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "time,response_time,version,model_date"
    assert len(lines) == 6
    assert all(line.endswith(",1.2.3,2026-11-28 19:45:01.123456") for line in lines[1:])
    assert "requests: 5, failed: 0" in result.stderr


async def test_an_unwritable_output_file_is_a_file_error(
    run_client: RunClient, tmp_path: Path, closed_port: int
) -> None:
    target = tmp_path / "missing" / "run.csv"
    result = await run_client("-c", "--output", str(target), "127.0.0.1", str(closed_port), "x")
    assert result.returncode == 8
    assert result.stderr == f"error: cannot write {target}: No such file or directory\n"


async def test_a_closed_pipe_ends_the_run_with_the_summary(
    fake_server: FakeServer, run_pipeline: RunPipeline
) -> None:
    # `head` exits after two lines; the client's next row hits a closed pipe.
    result = await run_pipeline(
        "head -n 2", "-c", "--interval", "0.02", "127.0.0.1", str(fake_server.port), "Yellow"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "time,response_time,version,model_date"
    assert "the CSV output was closed (broken pipe): stopping\n--- summary ---\n" in result.stderr
    assert "Traceback" not in result.stderr
