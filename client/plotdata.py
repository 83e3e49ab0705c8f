"""What the picture of a recorded run shows, computed without matplotlib: the annotations and
shaded spans from the run's summary, the failure track's bins, and the rehearsal's timeline
(lanes of states and moments). client/plot.py draws it."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from client.events import Change, FailureRun, MixedPeriod
from client.record import Sample
from client.summary import Summary, summarize

# Failure-track bin widths to choose from, in seconds.
_BIN_WIDTHS = (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
# A bin holds about this many requests at least, and the track about this many bins at most.
_REQUESTS_PER_BIN = 5
_MAX_BINS = 150


@dataclass(frozen=True)
class Annotation:
    """A labelled vertical line on the plot: a value's first appearance."""

    time: datetime
    label: str


@dataclass(frozen=True)
class Shading:
    """A shaded span on the plot: replies alternating between an old and a new value."""

    start: datetime
    end: datetime
    label: str


@dataclass(frozen=True)
class Segment:
    """A stretch of one lane in one state, drawn as a bar; the legend names the state."""

    start: datetime
    end: datetime
    label: str
    color: str


@dataclass(frozen=True)
class Point:
    """A moment on a lane, drawn as a marker; the legend names its kind."""

    time: datetime
    label: str
    marker: str
    color: str
    size: float = 8


@dataclass(frozen=True)
class Lane:
    """One row of the timeline: a pod or a job, its states and its moments."""

    name: str
    segments: tuple[Segment, ...] = ()
    points: tuple[Point, ...] = ()


@dataclass(frozen=True)
class Timeline:
    """What happened around the client's run, drawn under its latency and failures."""

    lanes: tuple[Lane, ...] = ()
    # Shaded through every panel and named in the legend, such as a job's run.
    spans: tuple[Shading, ...] = ()
    # Thin lines through every panel, so the lanes' moments line up with the requests.
    guides: tuple[datetime, ...] = ()
    # t = 0 of a time axis in seconds, and what happened then; None: the clock time.
    origin: datetime | None = None
    origin_label: str = ""


@dataclass(frozen=True)
class FailureBin:
    """The requests sent within one bin of the failure track."""

    start: datetime
    requests: int
    failed: int


@dataclass(frozen=True)
class PlotContents:
    """What the plot shows besides the latency line, so it can be checked without pixels."""

    summary: Summary
    annotations: tuple[Annotation, ...]
    mixed_spans: tuple[Shading, ...]
    failure_times: tuple[datetime, ...]
    downtime: FailureRun | None
    bin_seconds: float
    failure_bins: tuple[FailureBin, ...]


def plot_contents(samples: Sequence[Sample]) -> PlotContents:
    """Annotations from the same summary the live run prints, and the failure track's bins."""
    summary = summarize(samples)
    width = bin_seconds(samples)
    return PlotContents(
        summary=summary,
        annotations=tuple(Annotation(change.time, _label(change)) for change in summary.changes),
        mixed_spans=tuple(_shading(period) for period in summary.mixed),
        failure_times=tuple(sample.time for sample in samples if sample.failed),
        downtime=summary.longest_failure_run,
        bin_seconds=width,
        failure_bins=failure_bins(samples, width),
    )


def bin_seconds(samples: Sequence[Sample]) -> float:
    """A round bin width holding a few requests each, with at most ~150 bins over the run."""
    span = (samples[-1].time - samples[0].time).total_seconds() if samples else 0.0
    gaps = [(b.time - a.time).total_seconds() for a, b in itertools.pairwise(samples)]
    typical_gap = statistics.median(gaps) if gaps else 0.0
    wanted = max(_REQUESTS_PER_BIN * typical_gap, span / _MAX_BINS)
    return float(next((width for width in _BIN_WIDTHS if width >= wanted), _BIN_WIDTHS[-1]))


def failure_bins(samples: Sequence[Sample], width: float) -> tuple[FailureBin, ...]:
    """Requests and failures per ``width`` seconds, from the first request on, empty bins kept."""
    if not samples:
        return ()
    first = samples[0].time
    counts: dict[int, list[int]] = {}
    for sample in samples:
        index = math.floor((sample.time - first).total_seconds() / width)
        requests_failed = counts.setdefault(index, [0, 0])
        requests_failed[0] += 1
        requests_failed[1] += sample.failed
    return tuple(
        FailureBin(first + timedelta(seconds=i * width), *counts.get(i, (0, 0)))
        for i in range(max(counts) + 1)
    )


def _label(change: Change) -> str:
    if change.field == "version":
        return f"v{change.old} -> v{change.new}"
    return f"model {change.new}"


def _shading(period: MixedPeriod) -> Shading:
    prefix = "v" if period.field == "version" else "model "
    olds = " or ".join(prefix + value for value in period.old_values)
    return Shading(
        period.first_new,
        period.last_old,
        f"mixed: {period.old_replies} replies with {olds} after {prefix}{period.new}",
    )
