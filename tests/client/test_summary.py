"""The run summary: live events, downtime, latency percentiles, changes, and CSV rebuild."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.record import CSV_HEADER, Sample, format_row, read_samples
from client.summary import (
    Change,
    FailureRun,
    FailuresStarted,
    FirstReply,
    MixedPeriod,
    MixingStarted,
    SummaryBuilder,
    format_summary,
    percentile,
    summarize,
)

T0 = datetime(2026, 11, 28, 19, 45, 1, 0, tzinfo=UTC)


def at(second: float) -> datetime:
    return T0 + timedelta(seconds=second)


def ok(second: float, ms: float, version: str = "0.1.0", model: str = "A") -> Sample:
    return Sample(at(second), ms, version, model)


def failed(second: float, error: str = "cannot connect: Connection refused") -> Sample:
    return Sample(at(second), 0.5, None, None, error)


# A rollout: v0.1.0 answers, goes away for 3 requests (one short blip
# before), v0.2.0 answers, then a new model.
ROLLOUT = [
    ok(0, 4.0),
    failed(1),
    ok(2, 5.0),
    ok(3, 6.0),
    failed(4),
    failed(5, "no reply within 1 s"),
    failed(6),
    ok(7, 30.0, "0.2.0"),
    ok(8, 3.0, "0.2.0"),
    ok(9, 2.0, "0.2.0", "B"),
]


def test_live_events_tell_the_story_of_a_rollout() -> None:
    builder = SummaryBuilder()
    events = [builder.add(sample) for sample in ROLLOUT]
    assert events == [
        [FirstReply(at(0), "0.1.0", "A")],
        [FailuresStarted(at(1), "cannot connect: Connection refused")],
        [FailureRun(1, at(1), at(1), at(2))],
        [],
        [FailuresStarted(at(4), "cannot connect: Connection refused")],
        [],
        [],
        [FailureRun(3, at(4), at(6), at(7)), Change(at(7), "version", "0.1.0", "0.2.0")],
        [],
        [Change(at(9), "model_date", "A", "B")],
    ]


def test_summary_reports_downtime_latency_changes_and_reasons() -> None:
    builder = SummaryBuilder()
    for sample in ROLLOUT:
        builder.add(sample)
    builder.skip(2)
    summary = builder.summary()
    assert (summary.requests, summary.failures, summary.skipped_ticks) == (10, 4, 2)
    assert summary.longest_failure_run == FailureRun(3, at(4), at(6), at(7))
    # Latency over the six successes only: 2, 3, 4, 5, 6, 30.
    assert (summary.p50_ms, summary.p99_ms, summary.max_ms) == (4.0, 30.0, 30.0)
    assert summary.changes == (
        Change(at(7), "version", "0.1.0", "0.2.0"),
        Change(at(9), "model_date", "A", "B"),
    )
    # One server restarted into the new version: no reply with an old value after the new one.
    assert summary.mixed == ()
    assert summary.failure_reasons == (
        ("cannot connect: Connection refused", 3),
        ("no reply within 1 s", 1),
    )
    assert format_summary(summary).splitlines() == [
        "requests: 10, failed: 4, skipped ticks: 2 "
        "(a request outlasted the interval; no catch-up burst was sent)",
        "from 2026-11-28T19:45:01.000+00:00 to 2026-11-28T19:45:10.000+00:00",
        "latency of successful requests: p50 4.000 ms, p99 30.000 ms, max 30.000 ms",
        "failure reasons: 3 x cannot connect: Connection refused; 1 x no reply within 1 s",
        "longest failure run: 3 failed requests from 2026-11-28T19:45:05.000+00:00 "
        "to 2026-11-28T19:45:07.000+00:00 (2.000 s), next success at "
        "2026-11-28T19:45:08.000+00:00",
        "first reply at 2026-11-28T19:45:01.000+00:00: v0.1.0 with model from A",
        "version 0.2.0 first seen at 2026-11-28T19:45:08.000+00:00 (the reply before had 0.1.0)",
        "model_date B first seen at 2026-11-28T19:45:10.000+00:00 (the reply before had A)",
    ]


def behind_a_balancer() -> list[Sample]:
    """50 replies of v0.1.0, 700 alternating v0.2.0 / v0.1.0 (two pods), then 50 of v0.2.0."""
    samples = [ok(s, 2.0) for s in range(50)]
    samples += [ok(s, 2.0, "0.2.0" if s % 2 == 0 else "0.1.0") for s in range(50, 750)]
    samples += [ok(s, 2.0, "0.2.0") for s in range(750, 800)]
    return samples


def test_alternating_replies_give_one_first_seen_and_one_mixed_span() -> None:
    builder = SummaryBuilder()
    events = [event for sample in behind_a_balancer() for event in builder.add(sample)]
    # 699 flips between versions, three events: the first reply, the new version, the mix.
    assert events == [
        FirstReply(at(0), "0.1.0", "A"),
        Change(at(50), "version", "0.1.0", "0.2.0"),
        MixingStarted(at(51), "version", "0.1.0", "0.2.0", at(50)),
    ]
    summary = builder.summary()
    assert summary.changes == (Change(at(50), "version", "0.1.0", "0.2.0"),)
    assert summary.mixed == (
        MixedPeriod("version", "0.2.0", at(50), at(749), 350, ("0.1.0",), until_end=False),
    )
    assert format_summary(summary).splitlines()[-3:] == [
        "first reply at 2026-11-28T19:45:01.000+00:00: v0.1.0 with model from A",
        "version 0.2.0 first seen at 2026-11-28T19:45:51.000+00:00 (the reply before had 0.1.0)",
        "version mixed from 2026-11-28T19:45:51.000+00:00 to 2026-11-28T19:57:30.000+00:00 "
        "(699.000 s): 350 replies with 0.1.0 after 0.2.0 was first seen",
    ]
    assert len(format_summary(summary).splitlines()) == 6


def test_a_third_value_mixing_with_both_older_ones_counts_against_each_newer() -> None:
    versions = ["1", "1", "2", "1", "2", "2", "3", "2", "3", "1", "3", "3"]
    summary = summarize([ok(s, 1.0, v) for s, v in enumerate(versions)])
    assert summary.changes == (
        Change(at(2), "version", "1", "2"),
        Change(at(6), "version", "2", "3"),
    )
    # After "2" appeared, "1" answered at 3 and 9; after "3", "2" at 7 and "1" at 9.
    assert summary.mixed == (
        MixedPeriod("version", "2", at(2), at(9), 2, ("1",), until_end=False),
        MixedPeriod("version", "3", at(6), at(9), 2, ("2", "1"), until_end=False),
    )


def test_model_dates_mixing_while_pods_reload_are_a_mixed_span_of_model_date() -> None:
    models = ["A", "A", "B", "A", "B", "B"]
    summary = summarize([ok(s, 1.0, model=m) for s, m in enumerate(models)])
    assert summary.changes == (Change(at(2), "model_date", "A", "B"),)
    assert summary.mixed == (MixedPeriod("model_date", "B", at(2), at(3), 1, ("A",), False),)


def test_a_rollback_is_a_mixed_span_that_lasts_to_the_last_reply() -> None:
    samples = [ok(0, 1.0), ok(1, 1.0, "0.2.0"), ok(2, 1.0), ok(3, 1.0), failed(4)]
    summary = summarize(samples)
    assert summary.changes == (Change(at(1), "version", "0.1.0", "0.2.0"),)
    (period,) = summary.mixed
    assert period == MixedPeriod("version", "0.2.0", at(1), at(3), 2, ("0.1.0",), until_end=True)
    assert period.describe().endswith(
        "2 replies with 0.1.0 after 0.2.0 was first seen; "
        "the last reply of the run still had an older value"
    )


@given(st.lists(st.sampled_from(["v1", "v2", "v3", None]), max_size=60))
def test_first_seen_and_mixed_spans_match_their_definition(versions: list[str | None]) -> None:
    samples = [ok(s, 1.0, v) if v else failed(s) for s, v in enumerate(versions)]
    builder = SummaryBuilder()
    events = [event for sample in samples for event in builder.add(sample)]
    summary = builder.summary()
    answered = [(s, v) for s, v in enumerate(versions) if v is not None]
    first_index = {v: s for s, v in reversed(answered)}
    order = sorted(first_index, key=first_index.__getitem__)
    expected_mixed = []
    for rank, new in enumerate(order[1:], start=1):
        olds = [(s, v) for s, v in answered if s > first_index[new] and v in order[:rank]]
        if olds:
            expected_mixed.append(
                MixedPeriod(
                    "version",
                    new,
                    at(first_index[new]),
                    at(olds[-1][0]),
                    len(olds),
                    tuple(dict.fromkeys(v for _, v in olds)),
                    olds[-1][0] == answered[-1][0],
                )
            )
    first_seen = [(v, at(first_index[v])) for v in order[1:]]
    assert [(c.new, c.time) for c in summary.changes] == first_seen
    assert list(summary.mixed) == sorted(expected_mixed, key=lambda period: period.first_new)
    # However often the replies flip, the log gets one line per new value and per mix.
    version_events = [e for e in events if isinstance(e, Change | MixingStarted)]
    assert len(version_events) == len(summary.changes) + len(summary.mixed)


def test_a_run_that_ends_failing_is_not_recovered_and_can_be_the_longest() -> None:
    summary = summarize([ok(0, 1.0), failed(1), ok(2, 1.0), failed(3), failed(4)])
    assert summary.longest_failure_run == FailureRun(2, at(3), at(4), None)
    assert "longest failure run: 2 failed requests" in format_summary(summary)
    assert format_summary(summary).count("not recovered") == 1


def test_a_run_with_no_success_has_no_latency_or_versions() -> None:
    summary = summarize([failed(0), failed(1)])
    assert (summary.p50_ms, summary.first_reply, summary.changes) == (None, None, ())
    assert format_summary(summary).splitlines()[0] == "requests: 2, failed: 2"


def test_equal_failure_runs_report_the_first() -> None:
    summary = summarize([failed(0), ok(1, 1.0), failed(2), ok(3, 1.0)])
    assert summary.longest_failure_run == FailureRun(1, at(0), at(0), at(1))


def test_summary_rebuilt_from_the_csv_matches_the_live_one() -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    live = SummaryBuilder()
    for sample in ROLLOUT:
        live.add(sample)
        writer.writerow(format_row(sample))
    rebuilt = summarize(read_samples(io.StringIO(buffer.getvalue(), newline="")))
    expected = live.summary(skipped_known=False)
    # The CSV keeps four columns, so the failure reasons are only known live.
    assert rebuilt == expected.__class__(**{**expected.__dict__, "failure_reasons": ()})


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([7.0], 0.5, 7.0),
        ([7.0], 0.99, 7.0),
        ([1.0, 2.0], 0.5, 1.0),
        ([1.0, 2.0, 3.0], 0.5, 2.0),
        ([float(n) for n in range(1, 101)], 0.99, 99.0),
        ([float(n) for n in range(1, 102)], 0.99, 100.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert percentile(values, fraction) == expected


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1), st.floats(0.01, 1.0))
def test_percentile_is_a_sample_with_enough_values_at_or_below(
    values: list[float], fraction: float
) -> None:
    ordered = sorted(values)
    result = percentile(ordered, fraction)
    assert result in ordered
    assert sum(value <= result for value in ordered) >= fraction * len(ordered)
