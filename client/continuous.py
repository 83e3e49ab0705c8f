"""Continuous mode: one request per interval on a fixed schedule, a CSV row each, a summary."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import aiohttp

from client.events import Event, FailureRun, FailuresStarted
from client.recommend import Query, RequestError, new_session, recommend
from client.record import CSV_HEADER, ChangesOnlyFilter, Sample, format_row
from client.schedule import Tick, next_tick
from client.summary import Summary, SummaryBuilder


@dataclass(frozen=True)
class ContinuousOptions:
    """How long and how often to measure, and which rows to write."""

    interval: float
    count: int | None
    duration: float | None
    changes_only: bool


async def run_until_signalled(
    query: Query, options: ContinuousOptions, out: TextIO, log: logging.Logger
) -> Summary:
    """Measure until the count or duration is reached, or SIGINT/SIGTERM arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with new_session() as session:
            return await measure(session, query=query, options=options, out=out, log=log, stop=stop)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def measure(
    session: aiohttp.ClientSession,
    *,
    query: Query,
    options: ContinuousOptions,
    out: TextIO,
    log: logging.Logger,
    stop: asyncio.Event,
) -> Summary:
    """The measurement loop: rows to `out` (flushed each), events to `log`, until done or `stop`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = None if options.duration is None else start + options.duration
    builder = SummaryBuilder()
    row_filter = ChangesOnlyFilter() if options.changes_only else None
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    out.flush()
    tick = Tick(index=0, due=start, skipped=0)
    sent = 0
    while options.count is None or sent < options.count:
        if deadline is not None and tick.due >= deadline:
            break
        builder.skip(tick.skipped)
        if await _stopped_before(tick.due, stop):
            break
        sample = await _request_unless_stopped(session, query, stop)
        if sample is None:
            break
        sent += 1
        for event in builder.add(sample):
            log.log(_log_level(event), "%s", _log_line(event))
        if row_filter is None or row_filter.keep(sample):
            try:
                writer.writerow(format_row(sample))
                out.flush()
            except BrokenPipeError:
                # `| head` and the like: whoever read the rows is gone, so stop
                # measuring as if interrupted; the summary still goes to the log.
                log.warning("the CSV output was closed (broken pipe): stopping")
                break
        tick = next_tick(start, options.interval, tick.index, loop.time())
    return builder.summary()


async def _stopped_before(due: float, stop: asyncio.Event) -> bool:
    """Sleep until `due` (loop time); True if `stop` was set first."""
    delay = due - asyncio.get_running_loop().time()
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()


async def _request_unless_stopped(
    session: aiohttp.ClientSession, query: Query, stop: asyncio.Event
) -> Sample | None:
    """One measured request, or None if `stop` was set first (the request is abandoned)."""
    # The CSV keeps milliseconds; so does the live summary, so both agree.
    now = datetime.now(UTC)
    sent_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    request = asyncio.create_task(recommend(session, query))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait((request, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not request.done():
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        return None
    try:
        reply = request.result()
    except RequestError as failure:
        return Sample(sent_at, failure.response_time_ms, None, None, str(failure))
    return Sample(sent_at, reply.response_time_ms, reply.version, reply.model_date)


def _log_level(event: Event) -> int:
    return logging.WARNING if isinstance(event, FailuresStarted) else logging.INFO


def _log_line(event: Event) -> str:
    if isinstance(event, FailureRun):
        return "recovered: " + event.describe()
    return event.describe()
