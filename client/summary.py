"""The summary of a measurement run, built one sample at a time (live) or from a CSV."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from client.record import Sample, format_time


@dataclass(frozen=True)
class Change:
    """The server's version or model date differs from the previous successful reply."""

    time: datetime
    field: str  # "version" or "model_date"
    old: str
    new: str

    def describe(self) -> str:
        """One line for the log and the summary."""
        return f"{self.field} changed at {format_time(self.time)}: {self.old} -> {self.new}"


@dataclass(frozen=True)
class FirstReply:
    """The first successful reply of the run: the version and model everything is compared to."""

    time: datetime
    version: str
    model_date: str

    def describe(self) -> str:
        """One line for the log and the summary."""
        return (
            f"first reply at {format_time(self.time)}: "
            f"v{self.version} with model from {self.model_date}"
        )


@dataclass(frozen=True)
class FailuresStarted:
    """A request failed after a success (or as the first request)."""

    time: datetime
    error: str | None

    def describe(self) -> str:
        """One line for the log."""
        return f"failing since {format_time(self.time)}: {self.error or 'failed'}"


@dataclass(frozen=True)
class FailureRun:
    """Consecutive failed requests: the observed downtime."""

    count: int
    first: datetime
    last: datetime
    # The first successful request after the run; None if the run never ended.
    recovered_at: datetime | None

    def describe(self) -> str:
        """One line: how many, from when to when, and when the server answered again."""
        span = (self.last - self.first).total_seconds()
        text = (
            f"{self.count} failed requests from {format_time(self.first)} "
            f"to {format_time(self.last)} ({span:.3f} s)"
        )
        if self.recovered_at is None:
            return text + ", not recovered"
        return text + f", next success at {format_time(self.recovered_at)}"


Event = Change | FirstReply | FailuresStarted | FailureRun


@dataclass(frozen=True)
class Summary:
    """What an operator wants to know after a run."""

    requests: int
    failures: int
    # None when unknown (a summary rebuilt from a CSV cannot see skipped ticks).
    skipped_ticks: int | None
    first_time: datetime | None
    last_time: datetime | None
    # Latency percentiles (nearest rank) over successful requests, in ms.
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    longest_failure_run: FailureRun | None
    first_reply: FirstReply | None
    changes: tuple[Change, ...]
    # Failure reasons with their counts, most frequent first (live runs only).
    failure_reasons: tuple[tuple[str, int], ...]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class SummaryBuilder:
    """Accumulates samples in order; each `add` returns the events it caused, for a live log."""

    def __init__(self) -> None:
        self._requests = 0
        self._failures = 0
        self._skipped = 0
        self._first_time: datetime | None = None
        self._last_time: datetime | None = None
        # A compact array, not a list of floats: a long run at a short interval
        # keeps millions of latencies for exact percentiles.
        self._latencies = array("d")
        self._first_reply: FirstReply | None = None
        self._current: tuple[str, str] | None = None
        self._changes: list[Change] = []
        self._reasons: Counter[str] = Counter()
        self._run_count = 0
        self._run_first: datetime | None = None
        self._run_last: datetime | None = None
        self._longest: FailureRun | None = None

    def skip(self, ticks: int) -> None:
        """Record ticks of the schedule that passed while a request was still running."""
        self._skipped += ticks

    def add(self, sample: Sample) -> list[Event]:
        """Account for one sample, returning what changed because of it."""
        self._requests += 1
        if self._first_time is None:
            self._first_time = sample.time
        self._last_time = sample.time
        if sample.version is None or sample.model_date is None:
            return self._add_failure(sample)
        return self._add_success(sample, sample.version, sample.model_date)

    def _add_failure(self, sample: Sample) -> list[Event]:
        self._failures += 1
        if sample.error:
            self._reasons[sample.error] += 1
        self._run_count += 1
        self._run_last = sample.time
        if self._run_first is None:
            self._run_first = sample.time
            return [FailuresStarted(sample.time, sample.error)]
        return []

    def _add_success(self, sample: Sample, version: str, model_date: str) -> list[Event]:
        self._latencies.append(sample.response_time_ms)
        events: list[Event] = []
        if self._run_first is not None:
            events.append(self._close_run(sample.time))
        if self._current is None:
            first = FirstReply(sample.time, version, model_date)
            self._first_reply = first
            events.append(first)
        else:
            old_version, old_model_date = self._current
            for field, old, new in (
                ("version", old_version, version),
                ("model_date", old_model_date, model_date),
            ):
                if old != new:
                    change = Change(sample.time, field, old, new)
                    self._changes.append(change)
                    events.append(change)
        self._current = (version, model_date)
        return events

    def _open_run(self, recovered_at: datetime | None) -> FailureRun | None:
        if self._run_first is None or self._run_last is None:
            return None
        return FailureRun(self._run_count, self._run_first, self._run_last, recovered_at)

    def _close_run(self, recovered_at: datetime) -> FailureRun:
        run = self._open_run(recovered_at)
        assert run is not None  # only called while a run is open
        if self._longest is None or run.count > self._longest.count:
            self._longest = run
        self._run_count = 0
        self._run_first = self._run_last = None
        return run

    def summary(self, *, skipped_known: bool = True) -> Summary:
        """The summary so far; an unfinished failure run counts as not recovered."""
        longest = self._longest
        still_failing = self._open_run(None)
        if still_failing is not None and (longest is None or still_failing.count > longest.count):
            longest = still_failing
        latencies = sorted(self._latencies)
        return Summary(
            requests=self._requests,
            failures=self._failures,
            skipped_ticks=self._skipped if skipped_known else None,
            first_time=self._first_time,
            last_time=self._last_time,
            p50_ms=percentile(latencies, 0.50) if latencies else None,
            p99_ms=percentile(latencies, 0.99) if latencies else None,
            max_ms=latencies[-1] if latencies else None,
            longest_failure_run=longest,
            first_reply=self._first_reply,
            changes=tuple(self._changes),
            failure_reasons=tuple(self._reasons.most_common()),
        )


def summarize(samples: Iterable[Sample]) -> Summary:
    """The summary of recorded samples (skipped ticks are not in a CSV, so unknown)."""
    builder = SummaryBuilder()
    for sample in samples:
        builder.add(sample)
    return builder.summary(skipped_known=False)


def format_summary(summary: Summary) -> str:
    """The summary as lines of text for stderr."""
    lines = [_requests_line(summary)]
    if summary.first_time is not None and summary.last_time is not None:
        lines.append(f"from {format_time(summary.first_time)} to {format_time(summary.last_time)}")
    if summary.p50_ms is not None:
        lines.append(
            f"latency of successful requests: p50 {summary.p50_ms:.3f} ms, "
            f"p99 {summary.p99_ms:.3f} ms, max {summary.max_ms:.3f} ms"
        )
    if summary.failure_reasons:
        reasons = "; ".join(f"{count} x {reason}" for reason, count in summary.failure_reasons)
        lines.append(f"failure reasons: {reasons}")
    if summary.longest_failure_run is not None:
        lines.append("longest failure run: " + summary.longest_failure_run.describe())
    if summary.first_reply is not None:
        lines.append(summary.first_reply.describe())
    lines.extend(change.describe() for change in summary.changes)
    if not summary.changes and summary.first_reply is not None:
        lines.append("no version or model_date change")
    return "\n".join(lines)


def _requests_line(summary: Summary) -> str:
    text = f"requests: {summary.requests}, failed: {summary.failures}"
    if summary.skipped_ticks is not None:
        text += f", skipped ticks: {summary.skipped_ticks}"
        if summary.skipped_ticks:
            text += " (a request outlasted the interval; no catch-up burst was sent)"
    return text
