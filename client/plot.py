"""The picture of a recorded run: response time, failures, new versions and models, mixed spans."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from client.record import Sample
from client.summary import Change, FailureRun, MixedPeriod, Summary, summarize


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
class PlotContents:
    """What the plot shows besides the latency line, so it can be checked without pixels."""

    summary: Summary
    annotations: tuple[Annotation, ...]
    mixed_spans: tuple[Shading, ...]
    failure_times: tuple[datetime, ...]
    downtime: FailureRun | None


def plot_contents(samples: Sequence[Sample]) -> PlotContents:
    """Annotations from the same summary the live run prints."""
    summary = summarize(samples)
    return PlotContents(
        summary=summary,
        annotations=tuple(Annotation(change.time, _label(change)) for change in summary.changes),
        mixed_spans=tuple(_shading(period) for period in summary.mixed),
        failure_times=tuple(sample.time for sample in samples if sample.failed),
        downtime=summary.longest_failure_run,
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


def plot_run(samples: Sequence[Sample], output: Path, title: str) -> PlotContents:
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
    # A bare Figure on the Agg canvas: no pyplot global state, no display needed.
    figure = Figure(figsize=(11, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    failed = [sample for sample in samples if sample.failed]
    axes.plot(
        [date2num(sample.time) for sample in samples],
        # NaN breaks the line, so an outage is not drawn as a straight segment.
        [math.nan if sample.failed else sample.response_time_ms for sample in samples],
        marker=".",
        linewidth=0.8,
        color="tab:blue",
        label=f"response time ({len(samples) - len(failed)} ok)",
    )
    if failed:
        axes.scatter(
            [date2num(sample.time) for sample in failed],
            [sample.response_time_ms for sample in failed],
            marker="x",
            color="tab:red",
            zorder=3,
            label=f"failed ({len(failed)})",
        )
    if contents.downtime is not None:
        run = contents.downtime
        axes.axvspan(
            date2num(run.first),
            date2num(run.recovered_at or run.last),
            color="tab:red",
            alpha=0.12,
            label=f"longest failure run ({run.count} requests)",
        )
    for span in contents.mixed_spans:
        axes.axvspan(
            date2num(span.start),
            date2num(span.end),
            color="tab:orange",
            alpha=0.15,
            label=span.label,
        )
    for annotation in contents.annotations:
        axes.axvline(date2num(annotation.time), color="tab:green", linestyle="--", linewidth=1)
        axes.annotate(
            annotation.label,
            xy=(date2num(annotation.time), 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            rotation=90,
            va="top",
            fontsize=8,
            color="tab:green",
        )
    axes.xaxis_date(UTC)
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M:%S", tz=UTC))
    axes.set_xlabel(_time_axis_label(samples))
    axes.set_ylabel("response time (ms)")
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    # Outside the axes: the labels of the vertical lines run down from the top edge.
    figure.legend(loc="outside lower center", ncols=4, fontsize=8)
    figure.savefig(output, format="png", dpi=100)
    return contents


def _time_axis_label(samples: Sequence[Sample]) -> str:
    first = samples[0].time.astimezone(UTC).date()
    last = samples[-1].time.astimezone(UTC).date()
    days = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
    return f"time (UTC, {days})"
