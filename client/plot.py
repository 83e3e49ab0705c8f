"""The picture of a recorded run: latency of the successful requests, the failures on a track of
their own, new versions and models, mixed spans, and (from a rollout rehearsal) a lane per pod or
job showing what happened to it."""

from __future__ import annotations

import itertools
import math
import statistics
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from client.record import Sample
from client.summary import Change, FailureRun, MixedPeriod, Summary, summarize

# Failure-track bin widths to choose from, in seconds.
_BIN_WIDTHS = (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
# A bin holds about this many requests at least, and the track about this many bins at most.
_REQUESTS_PER_BIN = 5
_MAX_BINS = 150
_OK_COLOR = "tab:blue"
_FAILED_COLOR = "tab:red"
_CHANGE_COLOR = "tab:green"
# What fits on a line above the panels of the 12-inch figure at 10 points.
_SUBTITLE_CHARACTERS = 125


class PlotUnavailableError(RuntimeError):
    """matplotlib (the optional `plot` extra) is not installed."""


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


def plot_run(
    samples: Sequence[Sample],
    output: Path,
    title: str,
    *,
    subtitle: str = "",
    timeline: Timeline | None = None,
) -> PlotContents:
    """Draw the run into a PNG at `output` and return what was annotated."""
    if not samples:
        raise ValueError("no samples to plot")
    try:
        # Imported here: matplotlib is an optional extra, needed only for plots.
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.dates import DateFormatter, date2num  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError as err:
        raise PlotUnavailableError(
            f"plotting needs matplotlib ({err}); install the extra: "
            "pip install 'playlist-recommender[plot]'"
        ) from None
    contents = plot_contents(samples)
    timeline = timeline or Timeline()
    origin = timeline.origin

    def x(moment: datetime) -> float:
        if origin is None:
            return float(date2num(moment))
        return (moment - origin).total_seconds()

    lanes = timeline.lanes
    heights = [3.0, 1.3] + ([0.45 * len(lanes) + 0.3] if lanes else [])
    # A bare Figure on the Agg canvas: no pyplot global state, no display needed.
    figure = Figure(figsize=(12, sum(heights) + 2.2), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(len(heights), 1, sharex=True, height_ratios=heights)
    latency, failures = panels[0], panels[1]
    figure.suptitle(title, fontsize=13, fontweight="bold")
    if subtitle:
        latency.set_title(textwrap.fill(subtitle, _SUBTITLE_CHARACTERS), fontsize=10, loc="left")

    _draw_latency(latency, samples, contents, x)
    _draw_failures(failures, samples, contents, x)
    lane_entries: list[dict[str, Any]] = []
    if lanes:
        lane_entries = _draw_lanes(panels[2], lanes, x)
    for span in timeline.spans:
        for index, panel in enumerate(panels):
            panel.axvspan(
                x(span.start),
                x(span.end),
                color="tab:purple",
                alpha=0.10,
                label=span.label if index == 0 else None,
            )
    for moment in timeline.guides:
        for panel in panels:
            panel.axvline(x(moment), color="0.45", linestyle=":", linewidth=0.9)
    for panel in panels:
        panel.grid(alpha=0.3)
    bottom = panels[-1]
    if origin is None:
        bottom.xaxis_date(UTC)
        bottom.xaxis.set_major_formatter(DateFormatter("%H:%M:%S", tz=UTC))
        bottom.set_xlabel(_time_axis_label(samples))
    else:
        for panel in panels:
            panel.axvline(0, color="black", linewidth=1.2)
        stamp = origin.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        what = f": {timeline.origin_label}" if timeline.origin_label else ""
        bottom.set_xlabel(f"seconds from t = 0 ({stamp} UTC{what})")
    request_entries: dict[str, Any] = {}
    for panel in panels[:2]:
        for handle, label in zip(*panel.get_legend_handles_labels(), strict=True):
            request_entries.setdefault(label, handle)
    _legend(
        figure, {"requests": request_entries} | dict(zip(_LANE_GROUPS, lane_entries, strict=False))
    )
    figure.savefig(output, format="png", dpi=100)
    return contents


def _draw_latency(
    axes: Any, samples: Sequence[Sample], contents: PlotContents, x: Callable[[datetime], float]
) -> None:
    ok = len(samples) - len(contents.failure_times)
    axes.plot(
        [x(sample.time) for sample in samples],
        # NaN breaks the line, so an outage is not drawn as a straight segment.
        [math.nan if sample.failed else sample.response_time_ms for sample in samples],
        marker=".",
        markersize=3,
        linewidth=0.6,
        color=_OK_COLOR,
        label=f"response time of a successful request ({ok})",
    )
    for span in contents.mixed_spans:
        axes.axvspan(x(span.start), x(span.end), color="tab:orange", alpha=0.15, label=span.label)
    for annotation in contents.annotations:
        axes.axvline(x(annotation.time), color=_CHANGE_COLOR, linestyle="--", linewidth=1)
        axes.annotate(
            annotation.label,
            xy=(x(annotation.time), 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            rotation=90,
            va="top",
            fontsize=8,
            color=_CHANGE_COLOR,
        )
    axes.set_ylabel("response time (ms)\nsuccessful requests")
    axes.set_ylim(bottom=0)


def _draw_failures(
    axes: Any, samples: Sequence[Sample], contents: PlotContents, x: Callable[[datetime], float]
) -> None:
    width = contents.bin_seconds
    failing = [b for b in contents.failure_bins if b.failed]
    # Bars in seconds on a seconds axis, in days on a date axis.
    scale = (x(samples[0].time + timedelta(seconds=width)) - x(samples[0].time)) / width
    if failing:
        axes.bar(
            [x(b.start) for b in failing],
            [100 * b.failed / b.requests for b in failing],
            width=width * scale,
            align="edge",
            color=_FAILED_COLOR,
            label=f"failed requests, % per {width:g} s",
        )
    failed, requests = len(contents.failure_times), len(samples)
    verdict = (
        f"no failed request (0 of {requests})"
        if not failed
        else f"{failed} of {requests} requests failed ({100 * failed / requests:.1f} %)"
    )
    axes.text(
        0.005,
        0.92,
        verdict,
        transform=axes.transAxes,
        va="top",
        fontsize=9,
        fontweight="bold",
        color=_FAILED_COLOR if failed else "tab:green",
        # Readable over the bars of a total outage too.
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5},
        zorder=4,
    )
    axes.set_ylim(0, 100)
    axes.set_yticks([0, 50, 100])
    axes.set_ylabel(f"failed (%)\nper {width:g} s")


def _draw_lanes(
    axes: Any, lanes: Sequence[Lane], x: Callable[[datetime], float]
) -> list[dict[str, Any]]:
    """The lanes, top to bottom; the legend's entries of their bars and of their markers."""
    rows = {lane.name: len(lanes) - 1 - index for index, lane in enumerate(lanes)}
    bars: dict[str, Any] = {}
    markers: dict[str, Any] = {}
    for lane in lanes:
        for segment in lane.segments:
            bar = axes.broken_barh(
                [(x(segment.start), x(segment.end) - x(segment.start))],
                (rows[lane.name] - 0.3, 0.6),
                color=segment.color,
            )
            bars.setdefault(segment.label, bar)
    for lane in lanes:
        for point in lane.points:
            (marker,) = axes.plot(
                [x(point.time)],
                [rows[lane.name]],
                linestyle="none",
                marker=point.marker,
                markersize=point.size,
                markeredgecolor="black",
                markeredgewidth=0.6,
                color=point.color,
                zorder=3,
            )
            markers.setdefault(point.label, marker)
    axes.set_yticks(list(rows.values()), list(rows))
    axes.set_ylim(-0.6, len(lanes) - 0.4)
    return [bars, markers]


# The legend's columns for the lanes, after the requests'.
_LANE_GROUPS = ("pod and job states (bars)", "events (markers)")


def _legend(figure: Any, groups: dict[str, dict[str, Any]]) -> None:
    """One legend under the figure: a column per group (with its name on top when there are
    several), each entry once, in the order it was drawn."""
    from matplotlib.lines import Line2D  # noqa: PLC0415 (matplotlib is optional)

    groups = {name: entries for name, entries in groups.items() if entries}
    if len(groups) == 1:
        (entries,) = groups.values()
        figure.legend(
            list(entries.values()),
            list(entries),
            loc="outside lower center",
            ncols=min(4, len(entries)),
            fontsize=8,
        )
        return
    rows = 1 + max(len(entries) for entries in groups.values())
    handles: list[Any] = []
    labels: list[str] = []
    for name, entries in groups.items():
        # Matplotlib fills a legend column by column: pad each group to the same height.
        blanks = rows - 1 - len(entries)
        handles += [Line2D([], [], linestyle="none"), *entries.values()]
        handles += [Line2D([], [], linestyle="none") for _ in range(blanks)]
        labels += [name, *entries, *[""] * blanks]
    legend = figure.legend(
        handles, labels, loc="outside lower center", ncols=len(groups), fontsize=8
    )
    for index in range(0, len(labels), rows):
        legend.get_texts()[index].set_fontweight("bold")


def _time_axis_label(samples: Sequence[Sample]) -> str:
    first = samples[0].time.astimezone(UTC).date()
    last = samples[-1].time.astimezone(UTC).date()
    days = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
    return f"time (UTC, {days})"
