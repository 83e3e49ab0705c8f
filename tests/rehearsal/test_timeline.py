"""The plot's lanes from a scenario's markers: each pod's state (running, in the Service,
SIGTERMed) over time, its moments, and the mining job's run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from client.plot import Point, Segment, Shading
from rehearsal.report import EventKind, Marker, ScenarioRecord
from rehearsal.timeline import build_timeline

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
START, END = T0, T0 + timedelta(seconds=10)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def mark(seconds: float, lane: str, kind: EventKind, label: str = "") -> Marker:
    source = "haproxy" if kind.name.startswith(("SERVICE", "CHECK")) else "rehearsal"
    return Marker(at(seconds), label or f"{lane} {kind}", source, lane, kind)


def record(markers: tuple[Marker, ...], **fields: object) -> ScenarioRecord:
    return ScenarioRecord(
        key="4-control-no-drain",
        title="Control",
        description="",
        window_start=at(2),
        window_end=at(8),
        markers=markers,
        expect_failures=True,
        change=None,
        pod_switches=fields.pop("pod_switches", ()),  # type: ignore[arg-type]
        pod_exits=(),
        haproxy_notes=(),
        in_service_at_start=("pod0",),
        start_label="the rollout starts",
    )


# The control run in brief: pod0 serves, pod1 starts and enters the Service, then pod0 is
# SIGTERMed, exits at once and stays in the Service until HAProxy's checks take it out.
CONTROL = (
    mark(-5, "pod0", EventKind.POD_STARTED, "pod0 (v0.1.0) started"),
    mark(2, "pod1", EventKind.POD_STARTED, "pod1 (v0.1.0+v2) started"),
    mark(2.5, "pod1", EventKind.CHECK_PASSED),
    mark(2.5, "pod1", EventKind.SERVICE_UP),
    mark(3, "pod0", EventKind.SIGTERM),
    mark(3.1, "pod0", EventKind.POD_EXITED),
    mark(4, "pod0", EventKind.CHECK_FAILED),
    mark(6, "pod0", EventKind.SERVICE_DOWN),
    # HAProxy goes on checking a pod that is out: nothing to draw.
    mark(8, "pod0", EventKind.CHECK_FAILED),
    mark(2, "", EventKind.NOTE, "rollout started"),
)


def test_each_pod_is_a_lane_of_its_states_and_the_exited_pod_still_routed_is_red() -> None:
    timeline = build_timeline(record(CONTROL), START, END, origin_label="the rollout starts")
    pod0, pod1 = timeline.lanes
    assert pod0.name == "pod0 (v0.1.0)"
    assert pod0.segments == (
        Segment(at(0), at(3), "in the Service, serving", "tab:green"),
        Segment(at(3), at(3.1), "SIGTERMed, still in the Service (draining)", "gold"),
        Segment(at(3.1), at(6), "exited, still in the Service: requests to it fail", "tab:red"),
    )
    assert [(p.time, p.label) for p in pod0.points] == [
        (at(3), "SIGTERM"),
        (at(3.1), "process exited"),
        (at(4), "HAProxy: readiness check failed"),
        (at(6), "HAProxy: DOWN (leaves the Service)"),
    ]
    assert pod1.name == "pod1 (v0.1.0+v2)"
    assert pod1.segments == (
        Segment(at(2), at(2.5), "running, not in the Service", "0.80"),
        Segment(at(2.5), at(10), "in the Service, serving", "tab:green"),
    )
    assert [p.label for p in pod1.points] == ["process started", "HAProxy: UP (enters the Service)"]
    # t = 0 is the change's start; the SIGTERMs are drawn through every panel.
    assert (timeline.origin, timeline.origin_label) == (at(2), "the rollout starts")
    assert timeline.guides == (at(3),)
    assert timeline.spans == ()


def test_a_drained_pod_leaves_the_service_before_it_exits() -> None:
    drained = (
        mark(-5, "pod0", EventKind.POD_STARTED),
        mark(3, "pod0", EventKind.SIGTERM),
        mark(6, "pod0", EventKind.SERVICE_DOWN),
        mark(8, "pod0", EventKind.POD_EXITED),
    )
    (pod0,) = build_timeline(record(drained), START, END, origin_label="").lanes
    assert [(s.start, s.end, s.label) for s in pod0.segments] == [
        (at(0), at(3), "in the Service, serving"),
        (at(3), at(6), "SIGTERMed, still in the Service (draining)"),
        (at(6), at(8), "SIGTERMed, out of the Service"),
    ]
    assert "tab:red" not in {s.color for s in pod0.segments}


def test_the_mining_job_is_a_lane_with_its_commit_and_a_span_shaded_through_the_plot() -> None:
    markers = (
        mark(-5, "pod0", EventKind.POD_STARTED),
        mark(2, "mining job", EventKind.JOB_STARTED),
        mark(4.2, "mining job", EventKind.JOB_COMMITTED),
        mark(4.5, "mining job", EventKind.JOB_EXITED),
    )
    timeline = build_timeline(
        record(markers, pod_switches=(("pod0", at(4.3)),)), START, END, origin_label=""
    )
    job, pod0 = timeline.lanes
    assert job.name == "mining job"
    assert job.segments == (Segment(at(2), at(4.5), "mining job running", "tab:purple"),)
    assert [p.time for p in job.points] == [at(4.2)]
    assert timeline.spans == (Shading(at(2), at(4.5), "mining job running (shaded)"),)
    assert Point(at(4.3), "its /readyz shows the new model", "D", "tab:cyan") in pod0.points
    assert [s.label for s in pod0.segments] == ["in the Service, serving"]
