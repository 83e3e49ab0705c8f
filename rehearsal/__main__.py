"""``python -m rehearsal``: run the rollouts through HAProxy and check issue 6's targets."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rehearsal.deployment import ManifestError, load_rollout_settings
from rehearsal.haproxy import HaproxyError
from rehearsal.processes import RehearsalError
from rehearsal.report import combined_table, table_row
from rehearsal.rollouts import RunFacts, rollouts_readme
from rehearsal.scenarios import SCENARIOS, SECOND_DATASET, Options, Outcome, prepare, run_scenario

# What a published scenario directory holds.
PUBLISHED_FILES = ("client.csv", "client.png", "summary.md")
# Bounds of --interval and --lead (seconds), as the error message states them.
INTERVAL_MIN, INTERVAL_MAX = 0.001, 1.0
LEAD_MAX = 30.0
# `haproxy -v` starts "HAProxy version 2.6.12-1 ...".
_HAPROXY_VERSION_WORD = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rehearsal",
        description="Rehearse the scale-down, code and dataset rollouts (and a control run "
        "without drain) through HAProxy with real servers, mining job and client.",
        epilog="exit status: 0 every target met, 1 a target missed or a scenario failed, "
        "2 usage error or HAProxy missing",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("artifacts/rehearsal"),
        help="working directory for data, logs and results (default artifacts/rehearsal)",
    )
    parser.add_argument(
        "--publish",
        type=Path,
        metavar="DIR",
        help="also copy each scenario's CSV, plot and summary, and the table, into DIR",
    )
    parser.add_argument(
        "--interval", type=float, default=0.01, help="seconds between client requests"
    )
    parser.add_argument(
        "--lead", type=float, default=3.0, help="seconds measured before and after each change"
    )
    parser.add_argument(
        "--second-dataset",
        type=Path,
        default=SECOND_DATASET,
        help="the dataset of the dataset update (default tests/data/synth_ds1.csv.xz)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.key for s in SCENARIOS],
        help="run only this scenario (repeatable)",
    )
    return parser


def _haproxy_version(executable: str) -> str:
    # "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"
    words = subprocess.run(
        [executable, "-v"], capture_output=True, text=True, check=False
    ).stdout.split()
    if len(words) > _HAPROXY_VERSION_WORD:
        return f"HAProxy {words[_HAPROXY_VERSION_WORD]}"
    return "HAProxy (unknown version)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios; the exit status says whether every target was met."""
    args = _parser().parse_args(argv)
    if not INTERVAL_MIN <= args.interval <= INTERVAL_MAX or not 0 <= args.lead <= LEAD_MAX:
        print("rehearsal: error: --interval must be 0.001..1 and --lead 0..30", file=sys.stderr)
        return 2
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        print(
            "rehearsal: error: haproxy is not installed (make rehearse installs it)",
            file=sys.stderr,
        )
        return 2
    try:
        rollout = load_rollout_settings()
    except (ManifestError, OSError) as exc:
        print(f"rehearsal: error: {exc}", file=sys.stderr)
        return 2
    options = Options(
        output=args.output.resolve(),
        rollout=rollout,
        interval=args.interval,
        lead_seconds=args.lead,
        second_dataset=args.second_dataset,
    )
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    try:
        shared = prepare(options)
    except (RehearsalError, ManifestError, OSError) as exc:
        print(f"rehearsal: error: preparing: {exc}", file=sys.stderr)
        return 1
    outcomes: list[Outcome] = []
    errors: list[str] = []
    for scenario in SCENARIOS:
        if args.only and scenario.key not in args.only:
            continue
        print(f"rehearsal: {scenario.key} ...", file=sys.stderr, flush=True)
        try:
            outcome = run_scenario(options, shared, scenario)
        except (RehearsalError, HaproxyError, OSError) as exc:
            errors.append(f"{scenario.key}: {exc}")
            print(f"rehearsal: {scenario.key} could not run: {exc}", file=sys.stderr)
            continue
        outcomes.append(outcome)
        for check in outcome.checks:
            state = "met" if check.passed else ("MISSED" if check.gating else "missed, advisory")
            print(f"  {check.name}: {state} ({check.detail})", file=sys.stderr)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    table = combined_table([table_row(o.record, o.measurement, o.checks) for o in outcomes])
    facts = RunFacts(
        date=started,
        seconds=elapsed,
        haproxy=_haproxy_version(haproxy),
        python=platform.python_version(),
        machine=f"{platform.system()} {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        load_before=load_before,
        interval=options.interval,
        lead_seconds=options.lead_seconds,
        mining_engine=options.mining_engine,
        second_dataset=options.second_dataset.name,
        songs=shared.songs,
    )
    readme = rollouts_readme(table, rollout, facts, outcomes)
    (options.output / "README.md").write_text(readme, encoding="utf-8")
    if args.publish is not None:
        if errors:
            print(
                f"rehearsal: {args.publish} left as it was: a scenario could not run",
                file=sys.stderr,
            )
        else:
            _publish(args.publish, outcomes, readme)
    print(table)
    failed = [c.name for o in outcomes for c in o.checks if c.gating and not c.passed]
    for message in errors:
        print(f"rehearsal: FAILED {message}", file=sys.stderr)
    if failed:
        print(f"rehearsal: missed targets: {'; '.join(failed)}", file=sys.stderr)
    print(f"rehearsal: {elapsed:.0f} s in all", file=sys.stderr)
    return 1 if failed or errors else 0


def _publish(directory: Path, outcomes: Sequence[Outcome], readme: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for outcome in outcomes:
        target = directory / outcome.record.key
        target.mkdir(exist_ok=True)
        for name in PUBLISHED_FILES:
            shutil.copyfile(outcome.directory / name, target / name)
    (directory / "README.md").write_text(readme, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
