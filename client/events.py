"""What a run's summary reports as it happens: a new version or model, replies mixing old and
new values, the first reply, failures starting and ending. Each event describes itself in one
line for the live log; client/summary.py finds them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from client.record import format_time


@dataclass(frozen=True)
class Change:
    """A version or model_date that no earlier reply had, at its first reply."""

    time: datetime
    field: str  # "version" or "model_date"
    # The value of the previous successful reply.
    old: str
    new: str

    def describe(self) -> str:
        """One line for the log and the summary."""
        return (
            f"{self.field} {self.new} first seen at {format_time(self.time)} "
            f"(the reply before had {self.old})"
        )


@dataclass(frozen=True)
class MixingStarted:
    """An older value answered again after a newer one was first seen: replies alternate."""

    time: datetime
    field: str
    old: str
    new: str
    new_since: datetime

    def describe(self) -> str:
        """One line for the log; the span and its count come in the summary."""
        return (
            f"{self.field} mixed: {self.old} answered again at {format_time(self.time)}, "
            f"after {self.new} was first seen at {format_time(self.new_since)} "
            "(further alternation is counted, not logged)"
        )


@dataclass(frozen=True)
class MixedPeriod:
    """From a new value's first reply to the last reply with an older value of that field."""

    field: str
    new: str
    first_new: datetime
    last_old: datetime
    # Replies with an older value from ``first_new`` on, and those values in the order they
    # first answered again.
    old_replies: int
    old_values: tuple[str, ...]
    # The run's last successful reply was one of them: the mix had not ended.
    until_end: bool

    def describe(self) -> str:
        """One line for the summary."""
        span = (self.last_old - self.first_new).total_seconds()
        text = (
            f"{self.field} mixed from {format_time(self.first_new)} to "
            f"{format_time(self.last_old)} ({span:.3f} s): {self.old_replies} replies with "
            f"{' or '.join(self.old_values)} after {self.new} was first seen"
        )
        if self.until_end:
            return text + "; the last reply of the run still had an older value"
        return text


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


Event = Change | MixingStarted | FirstReply | FailuresStarted | FailureRun
