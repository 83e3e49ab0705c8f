"""The published README: the Deployment mapping, the comparison and the template filled in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client.record import Sample
from rehearsal.__main__ import main
from rehearsal.deployment import load_rollout_settings
from rehearsal.report import ExpectedChange, ScenarioRecord, checks, measure
from rehearsal.rollouts import RunFacts, comparison_table, mapping_table, rollouts_readme
from rehearsal.scenarios import Outcome

T0 = datetime(2026, 11, 28, 19, 40, tzinfo=UTC)


def outcome(key: str, title: str, change: ExpectedChange | None) -> Outcome:
    samples = tuple(
        Sample(T0 + timedelta(seconds=i), 2.0 + i, "0.1.0" if i < 3 else "0.1.0+v2", "A")
        for i in range(6)
    )
    record = ScenarioRecord(
        key=key,
        title=title,
        description="",
        window_start=T0 + timedelta(seconds=2),
        window_end=T0 + timedelta(seconds=4),
        markers=(),
        expect_failures=key.startswith("4-"),
        change=change,
        pod_switches=(),
        pod_exits=(),
        haproxy_notes=(),
    )
    m = measure(samples, record)
    return Outcome(record, samples, m, tuple(checks(samples, record, m)), Path(key))


OUTCOMES = (
    outcome("1-scale-down", "Scenario 1: scale 3 → 2", None),
    outcome(
        "2-code-update",
        "Scenario 2: code update",
        ExpectedChange("version", "0.1.0+v2", T0 + timedelta(seconds=2), "the rollout started"),
    ),
    outcome("4-control-no-drain", "Control", None),
)
FACTS = RunFacts(
    date=T0,
    seconds=88.4,
    haproxy="HAProxy version 2.6.12",
    python="3.11.2",
    machine="Linux x86_64, 2 CPUs",
    load_before=0.42,
    interval=0.01,
    lead_seconds=3.0,
    mining_engine="pyfim",
    second_dataset="synth_ds1.csv.xz",
    songs=("Song A", "Song B"),
)


def test_the_mapping_shows_the_manifest_values_and_their_haproxy_directives() -> None:
    rollout = load_rollout_settings()
    table = mapping_table(rollout)
    period = rollout.readiness.period_seconds
    assert f"| readinessProbe `periodSeconds` | {period} | `inter {period}s` |" in table
    fall = rollout.readiness.failure_threshold
    assert f"| readinessProbe `failureThreshold` | {fall} | `fall {fall}` |" in table
    assert f"| container env `DRAIN_SECONDS` | {rollout.env['DRAIN_SECONDS']} |" in table


def test_the_comparison_has_the_original_figures_for_the_scenarios_it_measured() -> None:
    rows = comparison_table(OUTCOMES).splitlines()[2:]
    assert len(rows) == 2  # the control has no counterpart in the original
    assert rows[0].startswith("| Scenario 1: scale 3 → 2 | no downtime | 0 failed of 6;")
    assert "3 s of timeouts" in rows[1]
    assert rows[1].endswith("new version 1.005 s after the rollout started |")


def test_the_readme_is_the_template_with_every_value_filled_in() -> None:
    text = rollouts_readme("THE TABLE", load_rollout_settings(), FACTS, OUTCOMES)
    assert "$" not in text
    assert "\nTHE TABLE\n" in text
    assert "2026-11-28 19:40 UTC" in text
    assert "load average 0.4 before the run" in text
    assert "“Song A”, “Song B”" in text
    assert "![Control](4-control-no-drain/client.png)" in text


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--lead", "99"]])
def test_bad_options_are_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "--interval must be" in capsys.readouterr().err


def test_without_haproxy_it_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["--output", str(tmp_path / "out")]) == 2
    assert "haproxy is not installed (make rehearse installs it)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
