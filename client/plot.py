"""The picture of a recorded run: latency of the successful requests, the failures on a track of
their own, new versions and models, mixed spans, and (from a rollout rehearsal) a lane per pod or
job showing what happened to it. What it shows is computed in client/plotdata.py; this module
draws it with matplotlib."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from client.plotdata import (
    Annotation,
    FailureBin,
    Lane,
    PlotContents,
    Point,
    Segment,
    Shading,
    Timeline,
    bin_seconds,
    failure_bins,
    plot_contents,
)
from client.record import Sample

__all__ = [
    "Annotation",
    "FailureBin",
    "Lane",
    "PlotContents",
    "PlotUnavailableError",
    "Point",
    "Segment",
    "Shading",
    "Timeline",
    "bin_seconds",
    "failure_bins",
    "plot_contents",
    "plot_run",
]

_OK_COLOR = "tab:blue"
_FAILED_COLOR = "tab:red"
_CHANGE_COLOR = "tab:green"
# What fits on a line above the panels of the 12-inch figure at 10 points.
_SUBTITLE_CHARACTERS = 125


class PlotUnavailableError(RuntimeError):
    """matplotlib (the optional `plot` extra) is not installed."""


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
