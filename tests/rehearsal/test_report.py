"""A scenario's measurements, its targets and their markdown, from the client's samples."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from client.record import Sample
from rehearsal.report import (
    MAX_CHANGE_LATENCY_MS,
    ExpectedChange,
    Marker,
    ScenarioRecord,
    arrival,
    checks,
    combined_table,
    measure,
    plot_subtitle,
    scenario_markdown,
    table_row,
)

T0 = datetime(2026, 11, 28, 19, 40, 0, tzinfo=UTC)
OLD, NEW = "0.1.0", "0.1.0+v2"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ok(seconds: float, ms: float = 2.0, version: str = OLD, model: str = "A") -> Sample:
    return Sample(at(seconds), ms, version, model)


def failed(seconds: float) -> Sample:
    return Sample(at(seconds), 0.4, None, None)


def record(**changes: object) -> ScenarioRecord:
    base = ScenarioRecord(
        key="2-code-update",
        title="Scenario 2: code update",
        description="Two pods replaced.",
        window_start=at(3),
        window_end=at(6),
        markers=(Marker(at(3.5), "pod0 SIGTERM"), Marker(at(3), "pod2 started")),
        expect_failures=False,
        change=ExpectedChange("version", NEW, at(3), "the rollout started"),
        pod_switches=(),
        pod_exits=(("pod0", 0),),
        haproxy_notes=("backend: 0 failed connections to pods",),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# Old version until 4 s, new from 4 s; a slow reply outside the window and one inside it.
SAMPLES = [
    ok(1.0, ms=300.0),
    ok(2.0),
    ok(3.0, ms=5.0),
    ok(3.5, ms=40.0),
    ok(4.0, ms=10.0, version=NEW),
    ok(4.5, ms=3.0),
    ok(5.0, ms=4.0, version=NEW),
    ok(6.0, ms=20.0, version=NEW),
    ok(7.0, ms=1.0, version=NEW),
]


def test_latency_is_measured_inside_the_change_window_and_totals_over_the_run() -> None:
    m = measure(SAMPLES, record())
    assert (m.whole.requests, m.whole.failures, m.whole.max_ms) == (9, 0, 300.0)
    assert m.window.requests == 6  # 3.0 to 6.0 inclusive
    assert m.window.max_ms == 40.0
    assert m.window.p50_ms == 5.0
    # The lead-in is the baseline: what the same traffic saw with nothing changing.
    assert (m.before.requests, m.before.max_ms) == (2, 300.0)


def test_the_change_is_first_seen_when_its_reply_arrives() -> None:
    m = measure(SAMPLES, record())
    assert m.first_seen == at(4.010)
    assert m.lag_seconds == pytest.approx(1.010)
    # A reply of the old version after the first new one: both pods served during the rollout.
    assert m.last_seen_old == arrival(SAMPLES[5]) == at(4.503)


def test_a_clean_rollout_meets_every_target() -> None:
    results = checks(SAMPLES, record(), measure(SAMPLES, record()))
    assert [(c.name, c.passed) for c in results] == [
        ("no failed request", True),
        (f"max latency during the change <= {MAX_CHANGE_LATENCY_MS:g} ms", True),
        ("the client ends on the new version", True),
        ("terminated pods exit 0", True),
    ]


def test_one_failed_request_misses_the_zero_failures_target() -> None:
    samples = [*SAMPLES[:3], failed(3.2), *SAMPLES[3:]]
    results = {c.name: c for c in checks(samples, record(), measure(samples, record()))}
    assert not results["no failed request"].passed
    assert results["no failed request"].detail == "1 failed"


def test_the_control_run_must_show_failures() -> None:
    control = record(expect_failures=True)
    clean = {c.name: c for c in checks(SAMPLES, control, measure(SAMPLES, control))}
    assert not clean["failures seen"].passed
    assert "no failed request" not in clean
    samples = [*SAMPLES, failed(7.5)]
    seen = {c.name: c for c in checks(samples, control, measure(samples, control))}
    assert seen["failures seen"].passed


def test_a_slow_reply_in_the_window_is_reported_without_failing_the_run() -> None:
    samples = [*SAMPLES[:4], ok(3.7, ms=150.0), *SAMPLES[4:]]
    latency = next(
        c for c in checks(samples, record(), measure(samples, record())) if "latency" in c.name
    )
    assert not latency.passed
    assert not latency.gating
    assert latency.detail == "150.0 ms"


def test_the_model_switch_must_be_seen_within_its_bound() -> None:
    change = ExpectedChange("model_date", "B", at(3), "the checkpoint's generation time", 2.0)
    scenario = record(change=change, pod_exits=())
    fast = [ok(2.0), ok(4.0, model="B"), ok(7.0, model="B")]
    slow = [ok(2.0), ok(5.2, model="B"), ok(7.0, model="B")]
    never = [ok(2.0), ok(7.0)]
    by_case = {}
    for name, samples in (("fast", fast), ("slow", slow), ("never", never)):
        results = checks(samples, scenario, measure(samples, scenario))
        by_case[name] = {c.name: (c.passed, c.detail) for c in results}
    bound = "new model_date seen <= 2 s after the checkpoint's generation time"
    assert by_case["fast"][bound] == (True, "1.002 s")
    assert by_case["slow"][bound] == (False, "2.202 s")
    assert by_case["never"][bound] == (False, "never seen")
    assert by_case["never"]["the client ends on the new model_date"] == (
        False,
        "last reply shows A",
    )


def test_a_pod_that_did_not_exit_cleanly_misses_its_target() -> None:
    scenario = record(pod_exits=(("pod0", 0), ("pod1", -9)))
    results = {c.name: c for c in checks(SAMPLES, scenario, measure(SAMPLES, scenario))}
    assert not results["terminated pods exit 0"].passed
    assert results["terminated pods exit 0"].detail == "pod1 exited -9"


def test_the_summary_lists_events_in_time_order_relative_to_the_window() -> None:
    scenario = record()
    m = measure(SAMPLES, scenario)
    text = scenario_markdown(SAMPLES, scenario, m, checks(SAMPLES, scenario, m))
    timeline = [
        line for line in text.splitlines() if line[:3] in ("| +", "| -") and line.count("|") == 3
    ]
    assert timeline == [
        "| +0.000 | pod2 started |",
        "| +0.500 | pod0 SIGTERM |",
        "| +1.010 | client: first reply with the new version |",
        "| +1.503 | client: last reply with the old version |",
    ]
    assert "| failed | 0 | 0 | 0 |" in text
    assert (
        "| latency p50 / p99 / max (ms) | 5.0 / 300.0 / 300.0 | 2.0 / 300.0 / 300.0 | "
        "5.0 / 40.0 / 40.0 |"
    ) in text
    assert "Change seen by the client: 1.010 s after the rollout started." in text
    assert "- backend: 0 failed connections to pods" in text


def test_the_combined_table_links_each_summary_and_names_missed_targets() -> None:
    scenario = record()
    samples = [*SAMPLES[:3], failed(3.2), failed(3.21), *SAMPLES[3:]]
    m = measure(samples, scenario)
    row = table_row(scenario, m, checks(samples, scenario, m))
    assert row.startswith("| [Scenario 2: code update](2-code-update/summary.md) | 11 | 2 |")
    assert "2 requests, 0.30 s" in row  # from the first failure to the next success
    assert row.endswith("| MISSED: no failed request |")
    table = combined_table([row])
    assert table.splitlines()[2] == row


def test_slow_replies_are_listed_with_the_last_action_before_them() -> None:
    haproxy = Marker(at(3.6), "HAProxy: pod0 is DOWN", "haproxy")
    scenario = record(markers=(*record().markers, haproxy))
    samples = [ok(1.0, ms=300.0), ok(3.2), ok(3.7, ms=120.0), failed(3.8), ok(4.0, version=NEW)]
    m = measure(samples, scenario)
    text = scenario_markdown(samples, scenario, m, checks(samples, scenario, m))
    rows = [line for line in text.splitlines() if line.startswith("| -2.000 | 300.0")]
    assert rows == ["| -2.000 | 300.0 | – |"]
    # HAProxy's log lines are context, not causes: the action before 3.7 s is the SIGTERM.
    assert "| +0.700 | 120.0 | pod0 SIGTERM (+0.500) |" in text


def test_the_control_run_is_labelled_a_control_whose_failures_are_expected_and_seen() -> None:
    control = record(expect_failures=True, title="Control run")
    samples = [*SAMPLES[:3], failed(3.2), failed(3.3), *SAMPLES[3:]]
    m = measure(samples, control)
    results = checks(samples, control, m)
    row = table_row(control, m, results)
    assert "all met" not in row
    assert row.endswith("| control: failures expected and seen; the other targets met |")
    text = scenario_markdown(samples, control, m, results)
    assert (
        "**A control run: its failures are expected.** Seen: 2 of 11 requests failed, which "
        "shows" in text
    )
    assert plot_subtitle(control, m).startswith(
        "CONTROL RUN: the drain is off, so failures are expected. Seen: 2 of 11 requests failed"
    )


def test_a_control_run_that_sees_no_failure_says_so_everywhere() -> None:
    control = record(expect_failures=True)
    m = measure(SAMPLES, control)
    results = checks(SAMPLES, control, m)
    assert "| MISSED: failures seen |" in table_row(control, m, results)
    assert "NONE seen: 0 of 9 requests failed" in plot_subtitle(control, m)


def test_a_missed_advisory_target_is_named_as_advisory_beside_the_met_ones() -> None:
    samples = [*SAMPLES[:4], ok(3.7, ms=150.0), *SAMPLES[4:]]
    m = measure(samples, record())
    row = table_row(record(), m, checks(samples, record(), m))
    assert row.endswith(
        f"| all met; advisory missed: max latency during the change <= "
        f"{MAX_CHANGE_LATENCY_MS:g} ms |"
    )


def test_the_plot_subtitle_of_a_rollout_gives_failures_latency_and_the_change() -> None:
    m = measure(SAMPLES, record())
    assert plot_subtitle(record(), m) == (
        "0 of 9 requests failed; latency during the change p50 / p99 / max 5.0 / 40.0 / 40.0 ms; "
        "new version seen 1.010 s after the rollout started"
    )
