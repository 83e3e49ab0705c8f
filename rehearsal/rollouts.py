"""The published ``docs/rollouts/README.md``: the setup, the tables and the plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from string import Template

from rehearsal.deployment import RolloutSettings
from rehearsal.report import change_text, latency_text
from rehearsal.scenarios import Outcome

TEMPLATE = Path(__file__).with_name("rollouts.md.in")
# The original project's Part 3 measurements (Argo CD on a real cluster), by scenario.
ORIGINAL = {
    "1-scale-down": "no downtime",
    "2-code-update": "3 s of timeouts and up to 5 s of slow responses: new pods got traffic "
    "before their rules were loaded",
    "3-dataset-update": "~600 ms lag spikes; 9 min 54 s end to end, ~4 min of it Argo CD's "
    "poll interval",
}


@dataclass(frozen=True)
class RunFacts:
    """Where and how the published numbers were measured."""

    date: datetime
    seconds: float
    haproxy: str
    python: str
    machine: str
    # The 1-minute load average before the run: other work on the machine shows in latency.
    load_before: float
    interval: float
    lead_seconds: float
    mining_engine: str
    second_dataset: str
    songs: tuple[str, ...]


def mapping_table(rollout: RolloutSettings) -> str:
    """How each Deployment setting is mirrored, with the values read from the manifest."""
    probe = rollout.readiness
    rows: list[tuple[str, object, str]] = [
        ("readinessProbe `httpGet.path`", probe.path, f"`option httpchk GET {probe.path}`"),
        (
            "readinessProbe `periodSeconds`",
            probe.period_seconds,
            f"`inter {probe.period_seconds}s`",
        ),
        (
            "readinessProbe `failureThreshold`",
            probe.failure_threshold,
            f"`fall {probe.failure_threshold}`",
        ),
        (
            "readinessProbe `successThreshold`",
            probe.success_threshold,
            f"`rise {probe.success_threshold}`",
        ),
        (
            "readinessProbe `timeoutSeconds`",
            probe.timeout_seconds,
            f"`timeout check {probe.timeout_seconds}s`",
        ),
        (
            "`replicas`",
            rollout.replicas,
            "pods in scenarios 2 and 3 and the control (scenario 1 starts from 3)",
        ),
        (
            "`maxSurge` / `maxUnavailable`",
            f"{rollout.max_surge} / {rollout.max_unavailable}",
            "per old pod: start a new one, wait until HAProxy has it UP, SIGTERM the old one, "
            "wait for its exit",
        ),
        (
            "`terminationGracePeriodSeconds`",
            rollout.termination_grace_seconds,
            "a SIGTERMed pod must exit within it, or it is killed and the run fails",
        ),
    ]
    rows += [
        (f"container env `{name}`", value, "set the same for every server process")
        for name, value in sorted(rollout.env.items())
    ]
    lines = [
        "| Deployment (`manifests/base/deployment.yaml`) | value | rehearsal |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {value} | {how} |" for name, value, how in rows]
    return "\n".join(lines)


def comparison_table(outcomes: Sequence[Outcome]) -> str:
    """The original's figures next to ours, for the scenarios the original measured."""
    lines = [
        "| rollout | original (Argo CD, real cluster) | this rehearsal |",
        "|---|---|---|",
    ]
    for outcome in outcomes:
        original = ORIGINAL.get(outcome.record.key)
        if original is None:
            continue
        m = outcome.measurement
        ours = (
            f"{m.whole.failures} failed of {m.whole.requests}; latency during the change "
            f"p50 / p99 / max {latency_text(m.window)} ms"
        )
        if outcome.record.change is not None:
            ours += f"; new {outcome.record.change.field} {change_text(outcome.record, m)}"
        lines.append(f"| {outcome.record.title} | {original} | {ours} |")
    return "\n".join(lines)


def rollouts_readme(
    table: str, rollout: RolloutSettings, facts: RunFacts, outcomes: Sequence[Outcome]
) -> str:
    """The whole README from its template."""
    plots = "\n\n".join(
        f"### {o.record.title}\n\n![{o.record.title}]({o.record.key}/client.png)" for o in outcomes
    )
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        table=table,
        comparison=comparison_table(outcomes),
        mapping=mapping_table(rollout),
        plots=plots,
        date=facts.date.strftime("%Y-%m-%d %H:%M UTC"),
        seconds=f"{facts.seconds:.0f}",
        haproxy=facts.haproxy,
        python=facts.python,
        machine=facts.machine,
        load=f"{facts.load_before:.1f}",
        interval_ms=f"{facts.interval * 1000:g}",
        lead=f"{facts.lead_seconds:g}",
        engine=facts.mining_engine,
        second_dataset=facts.second_dataset,
        songs=", ".join(f"“{song}”" for song in facts.songs),
        detection=rollout.readiness.worst_detection_seconds,
        drain=f"{rollout.drain_seconds:g}",
        period=rollout.readiness.period_seconds,
    )
