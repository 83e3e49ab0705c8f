"""Measurements of a scenario from the client's samples, the targets, and their markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from client.record import Sample
from client.summary import FailureRun, Summary, summarize

# Issue 6's targets.
MAX_CHANGE_LATENCY_MS = 100.0
MAX_MODEL_SWITCH_SECONDS = 2.0


class EventKind(StrEnum):
    """What a marker records: the plot draws each kind on the lane of the pod or job it concerns."""

    NOTE = "note"
    POD_STARTED = "pod started"
    SIGTERM = "SIGTERM"
    POD_EXITED = "pod exited"
    SERVICE_UP = "HAProxy: UP"
    SERVICE_DOWN = "HAProxy: DOWN"
    CHECK_FAILED = "HAProxy: check failed"
    CHECK_PASSED = "HAProxy: check passed"
    JOB_STARTED = "job started"
    JOB_COMMITTED = "job committed its output"
    JOB_EXITED = "job exited"


@dataclass(frozen=True)
class Marker:
    """Something the rehearsal did or saw, on the client's timeline."""

    time: datetime
    label: str
    # "rehearsal" for what it did, "haproxy" for what HAProxy logged.
    source: str = "rehearsal"
    # The pod (its HAProxy slot) or job it concerns, "" for none; and what happened.
    lane: str = ""
    kind: EventKind = EventKind.NOTE


@dataclass(frozen=True)
class ExpectedChange:
    """What the client must see after the change, and since when it could be seen."""

    field: str  # "version" or "model_date"
    value: str
    since: datetime
    since_label: str
    # The longest acceptable time from ``since`` to the first reply showing ``value``.
    max_seconds: float | None = None


@dataclass(frozen=True)
class ScenarioRecord:
    """What a scenario did: its change window, markers and facts the client cannot see."""

    key: str
    title: str
    description: str
    window_start: datetime
    window_end: datetime
    markers: tuple[Marker, ...]
    expect_failures: bool
    change: ExpectedChange | None
    # (pod, when its own /readyz first showed the new model_date), dataset scenario only.
    pod_switches: tuple[tuple[str, datetime], ...]
    # (pod, exit status) of each pod SIGTERMed during the change.
    pod_exits: tuple[tuple[str, int], ...]
    haproxy_notes: tuple[str, ...]
    # The pods HAProxy had in the Service when the client started (its states, asked then).
    in_service_at_start: tuple[str, ...] = ()
    # What happened at window_start, the plot's t = 0.
    start_label: str = ""


@dataclass(frozen=True)
class Measurement:
    """The numbers of a scenario."""

    whole: Summary
    # The lead-in: the same traffic with nothing changing, the baseline for the window.
    before: Summary
    window: Summary
    first_seen: datetime | None
    lag_seconds: float | None
    last_seen_old: datetime | None


@dataclass(frozen=True)
class Check:
    """One target: met or not, and what was measured."""

    name: str
    passed: bool
    detail: str
    # A missed advisory target is reported but does not fail the rehearsal.
    gating: bool = True


def arrival(sample: Sample) -> datetime:
    """When the reply arrived: sent time plus response time."""
    return sample.time + timedelta(milliseconds=sample.response_time_ms)


def _value(sample: Sample, field: str) -> str | None:
    return sample.version if field == "version" else sample.model_date


def measure(samples: Sequence[Sample], record: ScenarioRecord) -> Measurement:
    """Totals over the run, latency in the change window, and when the change was first seen."""
    in_window = [s for s in samples if record.window_start <= s.time <= record.window_end]
    before = [s for s in samples if s.time < record.window_start]
    first_seen = last_seen_old = lag = None
    if record.change is not None:
        change = record.change
        shown = [s for s in samples if not s.failed and _value(s, change.field) == change.value]
        old = [s for s in samples if not s.failed and _value(s, change.field) != change.value]
        if shown:
            first_seen = arrival(shown[0])
            lag = (first_seen - change.since).total_seconds()
        if old:
            last_seen_old = arrival(old[-1])
    return Measurement(
        summarize(samples), summarize(before), summarize(in_window), first_seen, lag, last_seen_old
    )


def checks(samples: Sequence[Sample], record: ScenarioRecord, m: Measurement) -> list[Check]:
    """Issue 6's targets for this scenario."""
    result = []
    failed = m.whole.failures
    if record.expect_failures:
        result.append(
            Check("failures seen", failed > 0, f"{failed} failed (the rehearsal must see some)")
        )
    else:
        result.append(Check("no failed request", failed == 0, f"{failed} failed"))
        worst = m.window.max_ms
        result.append(
            Check(
                f"max latency during the change <= {MAX_CHANGE_LATENCY_MS:g} ms",
                worst is not None and worst <= MAX_CHANGE_LATENCY_MS,
                "no successful request in the window" if worst is None else f"{worst:.1f} ms",
                gating=False,
            )
        )
    change = record.change
    if change is not None:
        last = next((s for s in reversed(samples) if not s.failed), None)
        settled = last is not None and _value(last, change.field) == change.value
        result.append(
            Check(
                f"the client ends on the new {change.field}",
                settled,
                f"last reply shows {_value(last, change.field) if last else 'nothing'}",
            )
        )
        if change.max_seconds is not None:
            result.append(
                Check(
                    f"new {change.field} seen <= {change.max_seconds:g} s "
                    f"after {change.since_label}",
                    m.lag_seconds is not None and m.lag_seconds <= change.max_seconds,
                    "never seen" if m.lag_seconds is None else f"{m.lag_seconds:.3f} s",
                )
            )
    bad_exits = [f"{pod} exited {code}" for pod, code in record.pod_exits if code != 0]
    if record.pod_exits:
        result.append(
            Check(
                "terminated pods exit 0",
                not bad_exits,
                "; ".join(bad_exits) or f"{len(record.pod_exits)} of {len(record.pod_exits)}",
            )
        )
    return result


@dataclass(frozen=True)
class SlowReply:
    """A successful reply over the latency target, with the last event before it was sent."""

    sample: Sample
    after: Marker | None


def slow_replies(
    samples: Sequence[Sample], markers: Sequence[Marker], threshold_ms: float
) -> list[SlowReply]:
    """Replies slower than ``threshold_ms``, each with the latest marker at or before it."""
    ordered = sorted(markers, key=lambda marker: marker.time)
    result = []
    for sample in samples:
        if sample.failed or sample.response_time_ms <= threshold_ms:
            continue
        before = [marker for marker in ordered if marker.time <= sample.time]
        result.append(SlowReply(sample, before[-1] if before else None))
    return result


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def latency_text(summary: Summary) -> str:
    """p50 / p99 / max in ms."""
    return f"{_ms(summary.p50_ms)} / {_ms(summary.p99_ms)} / {_ms(summary.max_ms)}"


def failure_run_text(run: FailureRun | None) -> str:
    """The longest failure run: how many requests over how long."""
    if run is None:
        return "none"
    end = run.recovered_at or run.last
    return f"{run.count} requests, {(end - run.first).total_seconds():.2f} s"


def change_text(record: ScenarioRecord, m: Measurement) -> str:
    """When the client first saw the change, relative to what made it visible."""
    if record.change is None:
        return "–"
    if m.lag_seconds is None:
        return "never seen"
    return f"{m.lag_seconds:.3f} s after {record.change.since_label}"


def plot_subtitle(record: ScenarioRecord, m: Measurement) -> str:
    """The plot's line under its title: what to conclude, or why its failures are expected."""
    if record.expect_failures:
        return (
            "CONTROL RUN: the drain is off, so failures are expected. "
            f"{control_verdict(m)}, which shows the rehearsal sees failures when there are some."
        )
    text = (
        f"{m.whole.failures} of {m.whole.requests} requests failed; latency during the change "
        "p50 / p99 / max "
        f"{latency_text(m.window)} ms"
    )
    if record.change is not None:
        text += f"; new {record.change.field} seen {change_text(record, m)}"
    return text


def _offset(moment: datetime, origin: datetime) -> str:
    return f"{(moment - origin).total_seconds():+.3f}"


def scenario_markdown(
    samples: Sequence[Sample], record: ScenarioRecord, m: Measurement, results: Sequence[Check]
) -> str:
    """The scenario's summary.md."""
    origin = record.window_start
    lines = [f"# {record.title}", "", record.description, ""]
    if record.expect_failures:
        lines += [
            f"**A control run: its failures are expected.** {control_verdict(m)}, which shows "
            "that the rehearsal sees failed requests when there are some, so the other "
            "scenarios' zeros mean something.",
            "",
        ]
    lines += [
        f"Change window: {origin.isoformat(timespec='milliseconds')} to "
        f"{record.window_end.isoformat(timespec='milliseconds')} "
        f"({(record.window_end - origin).total_seconds():.2f} s); times below are seconds from "
        "its start.",
        "",
        "| t (s) | event |",
        "|---:|---|",
    ]
    events = [*record.markers]
    if m.first_seen is not None and record.change is not None:
        events.append(
            Marker(m.first_seen, f"client: first reply with the new {record.change.field}")
        )
    if m.last_seen_old is not None and record.change is not None:
        events.append(
            Marker(m.last_seen_old, f"client: last reply with the old {record.change.field}")
        )
    events.extend(
        Marker(when, f"{pod}: /readyz shows the new model_date")
        for pod, when in record.pod_switches
    )
    for marker in sorted(events, key=lambda e: e.time):
        lines.append(f"| {_offset(marker.time, origin)} | {marker.label} |")
    lines += [
        "",
        "| measure | whole run | before the change | change window |",
        "|---|---:|---:|---:|",
        f"| requests | {m.whole.requests} | {m.before.requests} | {m.window.requests} |",
        f"| failed | {m.whole.failures} | {m.before.failures} | {m.window.failures} |",
        f"| longest failure run | {failure_run_text(m.whole.longest_failure_run)} | "
        f"{failure_run_text(m.before.longest_failure_run)} | "
        f"{failure_run_text(m.window.longest_failure_run)} |",
        f"| latency p50 / p99 / max (ms) | {latency_text(m.whole)} | {latency_text(m.before)} | "
        f"{latency_text(m.window)} |",
        "",
        f"Change seen by the client: {change_text(record, m)}.",
        "",
        "| target | result | measured |",
        "|---|---|---|",
    ]
    for check in results:
        verdict = "met" if check.passed else ("MISSED" if check.gating else "missed (advisory)")
        lines.append(f"| {check.name} | {verdict} | {check.detail} |")
    actions = [marker for marker in record.markers if marker.source == "rehearsal"]
    slow = slow_replies(samples, actions, MAX_CHANGE_LATENCY_MS)
    if slow:
        lines += [
            "",
            f"Replies slower than {MAX_CHANGE_LATENCY_MS:g} ms, with the rehearsal's last action "
            "before each:",
            "",
            "| sent at t (s) | response time (ms) | last action before it (t) |",
            "|---:|---:|---|",
        ]
        for reply in slow:
            after = (
                "–"
                if reply.after is None
                else f"{reply.after.label} ({_offset(reply.after.time, origin)})"
            )
            lines.append(
                f"| {_offset(reply.sample.time, origin)} | "
                f"{reply.sample.response_time_ms:.1f} | {after} |"
            )
    if m.whole.failure_reasons:
        lines += ["", "Failure reasons (client):", ""]
        lines += [f"- {count} × {reason}" for reason, count in m.whole.failure_reasons]
    if record.haproxy_notes:
        lines += ["", "HAProxy's own counters:", ""]
        lines += [f"- {note}" for note in record.haproxy_notes]
    lines += ["", "Files: [client.csv](client.csv), [client.png](client.png).", ""]
    return "\n".join(lines)


def control_verdict(m: Measurement) -> str:
    """What a control run saw, against what it must see."""
    if m.whole.failures:
        return f"Seen: {m.whole.failures} of {m.whole.requests} requests failed"
    return f"NONE seen: 0 of {m.whole.requests} requests failed"


def table_row(record: ScenarioRecord, m: Measurement, results: Sequence[Check]) -> str:
    """One row of the combined table."""
    missed = [c.name for c in results if not c.passed and c.gating]
    advisory = [c.name for c in results if not c.passed and not c.gating]
    if missed:
        verdict = "MISSED: " + "; ".join(missed)
    elif record.expect_failures:
        verdict = "control: failures expected and seen; the other targets met"
    else:
        verdict = "all met"
    if advisory:
        verdict += "; advisory missed: " + "; ".join(advisory)
    return (
        f"| [{record.title}]({record.key}/summary.md) | {m.whole.requests} | "
        f"{m.whole.failures} | {failure_run_text(m.whole.longest_failure_run)} | "
        f"{latency_text(m.window)} | {_ms(m.before.max_ms)} | {change_text(record, m)} | "
        f"{verdict} |"
    )


TABLE_HEADER = (
    "| scenario | requests | failed | longest failure run | latency during the change, "
    "p50 / p99 / max (ms) | max before the change (ms) | change seen by the client | targets |\n"
    "|---|---:|---:|---|---|---:|---|---|"
)


def combined_table(rows: Sequence[str]) -> str:
    """The table of every scenario."""
    return "\n".join([TABLE_HEADER, *rows])
