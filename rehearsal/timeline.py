"""The plot's timeline of a scenario: a lane per pod showing its process and its place in the
Service (HAProxy's view), its SIGTERM and exit; a lane and a shaded span for the mining job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from client.plot import Lane, Point, Segment, Shading, Timeline
from rehearsal.report import EventKind, Marker, ScenarioRecord


@dataclass(frozen=True)
class PodState:
    """What is true of a pod at a moment."""

    running: bool
    in_service: bool
    terminating: bool


# How each pod state is drawn: the legend's words and the bar's colour (None: no bar).
_STATE_STYLES = {
    (True, True, False): ("in the Service, serving", "tab:green"),
    (True, False, False): ("running, not in the Service", "0.80"),
    (True, True, True): ("SIGTERMed, still in the Service (draining)", "gold"),
    (True, False, True): ("SIGTERMed, out of the Service", "wheat"),
    (False, True, False): ("exited, still in the Service: requests to it fail", "tab:red"),
    (False, True, True): ("exited, still in the Service: requests to it fail", "tab:red"),
}
# How each kind of moment is drawn: legend words, marker, colour. Passed checks are not drawn:
# they repeat every period and change nothing.
_POINT_STYLES = {
    EventKind.POD_STARTED: ("process started", "o", "white"),
    EventKind.SERVICE_UP: ("HAProxy: UP (enters the Service)", "^", "tab:green"),
    EventKind.SIGTERM: ("SIGTERM", "X", "black"),
    EventKind.POD_EXITED: ("process exited", "s", "0.35"),
    EventKind.CHECK_FAILED: ("HAProxy: readiness check failed", "x", "tab:red"),
    EventKind.SERVICE_DOWN: ("HAProxy: DOWN (leaves the Service)", "v", "tab:red"),
}
_SWITCH_STYLE = ("its /readyz shows the new model", "D", "tab:cyan")
_COMMIT_STYLE = ("checkpoint written: the new rules are committed", "*", "gold", 13)
_JOB_COLOR = "tab:purple"
_POD_KINDS = {
    EventKind.POD_STARTED,
    EventKind.POD_EXITED,
    EventKind.SIGTERM,
    EventKind.SERVICE_UP,
    EventKind.SERVICE_DOWN,
}


def _pod_states(
    markers: Sequence[Marker], start: datetime, initial: PodState
) -> list[tuple[datetime, PodState]]:
    """A pod's state from ``start`` on: each moment it changed, and the state from then."""
    states = [(start, initial)]
    for marker in sorted(markers, key=lambda m: m.time):
        if marker.kind not in _POD_KINDS or marker.time <= start:
            continue
        state = states[-1][1]
        states.append(
            (
                marker.time,
                PodState(
                    running=(state.running or marker.kind == EventKind.POD_STARTED)
                    and marker.kind != EventKind.POD_EXITED,
                    in_service={EventKind.SERVICE_UP: True, EventKind.SERVICE_DOWN: False}.get(
                        marker.kind, state.in_service
                    ),
                    terminating=state.terminating or marker.kind == EventKind.SIGTERM,
                ),
            )
        )
    return states


def _state_at(states: Sequence[tuple[datetime, PodState]], moment: datetime) -> PodState:
    return [state for since, state in states if since <= moment][-1]


def _segments(states: Sequence[tuple[datetime, PodState]], end: datetime) -> tuple[Segment, ...]:
    """The bars of a pod's states up to ``end``."""
    segments = []
    for (since, state), (until, _) in zip(states, [*states[1:], (end, states[-1][1])], strict=True):
        style = _STATE_STYLES.get((state.running, state.in_service, state.terminating))
        if style is not None and min(until, end) > since:
            segments.append(Segment(since, min(until, end), *style))
    return tuple(segments)


def _points(
    markers: Sequence[Marker],
    states: Sequence[tuple[datetime, PodState]],
    start: datetime,
    end: datetime,
) -> tuple[Point, ...]:
    """A pod's moments; a failed check only while the pod is in the Service, where it leads to
    DOWN (HAProxy also logs the checks of a pod long gone)."""
    return tuple(
        Point(marker.time, *_POINT_STYLES[marker.kind])
        for marker in sorted(markers, key=lambda m: m.time)
        if marker.kind in _POINT_STYLES
        and start <= marker.time <= end
        and (marker.kind != EventKind.CHECK_FAILED or _state_at(states, marker.time).in_service)
    )


def _job_lane(name: str, markers: Sequence[Marker], end: datetime) -> tuple[Lane, Shading]:
    """A job's bar from its start to its exit, its commit marked; the same span shaded."""
    began = min(m.time for m in markers if m.kind == EventKind.JOB_STARTED)
    ended = max((m.time for m in markers if m.kind == EventKind.JOB_EXITED), default=end)
    commits = tuple(
        Point(m.time, *_COMMIT_STYLE) for m in markers if m.kind == EventKind.JOB_COMMITTED
    )
    bar = Segment(began, ended, f"{name} running", _JOB_COLOR)
    return Lane(name, (bar,), commits), Shading(began, ended, f"{name} running (shaded)")


def build_timeline(
    record: ScenarioRecord, start: datetime, end: datetime, *, origin_label: str
) -> Timeline:
    """The lanes from ``start`` to ``end`` (the client's run), t = 0 at the change's start."""
    by_lane: dict[str, list[Marker]] = {}
    for marker in record.markers:
        if marker.lane:
            by_lane.setdefault(marker.lane, []).append(marker)
    lanes = []
    spans = []
    for name in sorted(by_lane):
        markers = by_lane[name]
        if any(marker.kind == EventKind.JOB_STARTED for marker in markers):
            lane, span = _job_lane(name, markers, end)
            lanes.append(lane)
            spans.append(span)
            continue
        started = [m for m in markers if m.kind == EventKind.POD_STARTED]
        initial = PodState(
            running=any(m.time <= start for m in started),
            in_service=name in record.in_service_at_start,
            terminating=False,
        )
        states = _pod_states(markers, start, initial)
        points = _points(markers, states, start, end)
        switched = [when for pod, when in record.pod_switches if pod == name]
        points += tuple(Point(when, *_SWITCH_STYLE) for when in switched)
        title = started[0].label.removesuffix(" started") if started else name
        lanes.append(Lane(title, _segments(states, end), points))
    guides = tuple(
        marker.time
        for marker in record.markers
        if marker.kind == EventKind.SIGTERM and start <= marker.time <= end
    )
    return Timeline(
        lanes=tuple(lanes),
        spans=tuple(spans),
        guides=guides,
        origin=record.window_start,
        origin_label=origin_label,
    )
