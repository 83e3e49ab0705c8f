"""The summary of a measurement run, built one sample at a time (live) or from a CSV."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from client.events import (
    Change,
    Event,
    FailureRun,
    FailuresStarted,
    FirstReply,
    MixedPeriod,
    MixingStarted,
)
from client.record import Sample, format_time

__all__ = [
    "Change",
    "Event",
    "FailureRun",
    "FailuresStarted",
    "FirstReply",
    "MixedPeriod",
    "MixingStarted",
    "Summary",
    "SummaryBuilder",
    "format_summary",
    "percentile",
    "summarize",
]


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
    # Each value's first appearance after the first reply, in time order.
    changes: tuple[Change, ...]
    # The spans where replies alternated between a new value and older ones.
    mixed: tuple[MixedPeriod, ...]
    # Failure reasons with their counts, most frequent first (live runs only).
    failure_reasons: tuple[tuple[str, int], ...]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class _NewValue:
    """A value first seen after the first reply, and the older replies that came after it."""

    def __init__(self, value: str, rank: int, first_seen: datetime) -> None:
        self.value = value
        self.rank = rank
        self.first_seen = first_seen
        self.old_replies = 0
        self.last_old: datetime | None = None
        # A dict keeps the older values in the order they answered, without repeats.
        self.old_values: dict[str, None] = {}


class _FieldHistory:
    """The values of one field in the order first seen; alternation is counted, not listed."""

    def __init__(self, field: str) -> None:
        self._field = field
        # Value -> its rank: 0 for the first reply's, then one more per new value.
        self._ranks: dict[str, int] = {}
        self._previous: str | None = None
        self._new_values: list[_NewValue] = []

    def add(self, time: datetime, value: str) -> list[Change | MixingStarted]:
        """Account for one successful reply's value; events only for a new value or a new mix."""
        events: list[Change | MixingStarted] = []
        rank = self._ranks.get(value)
        if rank is None:
            self._ranks[value] = len(self._ranks)
            if self._previous is not None:
                self._new_values.append(_NewValue(value, self._ranks[value], time))
                events.append(Change(time, self._field, self._previous, value))
        elif rank < len(self._ranks) - 1:
            # An older value: it counts against every value first seen after it.
            for new in reversed(self._new_values):
                if new.rank <= rank:
                    break
                if new.old_replies == 0:
                    events.append(
                        MixingStarted(time, self._field, value, new.value, new.first_seen)
                    )
                new.old_replies += 1
                new.last_old = time
                new.old_values[value] = None
        self._previous = value
        return events

    def mixed(self, last_success: datetime | None) -> list[MixedPeriod]:
        """The mixed period of each new value that older values answered after."""
        return [
            MixedPeriod(
                self._field,
                new.value,
                new.first_seen,
                new.last_old,
                new.old_replies,
                tuple(new.old_values),
                new.last_old == last_success,
            )
            for new in self._new_values
            if new.last_old is not None
        ]


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
        self._last_success: datetime | None = None
        self._histories = (_FieldHistory("version"), _FieldHistory("model_date"))
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
        if self._first_reply is None:
            self._first_reply = FirstReply(sample.time, version, model_date)
            events.append(self._first_reply)
        for history, value in zip(self._histories, (version, model_date), strict=True):
            for event in history.add(sample.time, value):
                if isinstance(event, Change):
                    self._changes.append(event)
                events.append(event)
        self._last_success = sample.time
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
            mixed=tuple(
                sorted(
                    (
                        period
                        for history in self._histories
                        for period in history.mixed(self._last_success)
                    ),
                    key=lambda period: period.first_new,
                )
            ),
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
    mixed = {(period.field, period.new): period for period in summary.mixed}
    for change in summary.changes:
        lines.append(change.describe())
        period = mixed.get((change.field, change.new))
        if period is not None:
            lines.append(period.describe())
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
