"""Benchmarks (b) and (d): reloading the default-parameter model while wrk drives the server.

One ``python -m http_api`` serves synth_dense mined by the real miner at the job's defaults
(~970k rules, the most ``MIN_SUPPORT=auto`` keeps; cached under ``build/``).
Phases alternate in the same run on the same server under the same wrk load: "steady" (the
baseline: no reload) and "reload" (``--reloads-per-phase`` new models, evenly spaced: the same
rules under a new generation time, each a full read, verify and index build). The server is
pinned to one CPU, wrk and this process (which writes the models, as the miner would from
elsewhere) to the other, so a reload competes with serving for the core. ``RELOAD_PRIORITY``
and ``RELOAD_CPU_SHARE`` in the environment reach the server.

Reported per phase: wrk rate, p50, p99, max, errors; the largest event-loop lag the server's own
probe saw (its DEBUG "event loop lag" lines, one per second); peak RSS sampled every 5 ms.
Targets: max loop lag ≤ steady + 25 ms, p99 ≤ 1.5 × steady p99, zero errors, peak RSS ≤ 200 MiB.

    .venv/bin/python -m benchmarks.serve_reload [--phase-seconds 10] [--rounds 3]
        [--reloads-per-phase 1] [--data-dir DIR --dataset CSV] [--ranking best|sum]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._server import (
    ServerProcess,
    WrkResult,
    add_model_options,
    cpu_pair,
    draw_bodies,
    log_time,
    run_wrk,
    served_model,
)
from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, write_checkpoint
from mining.rulesfile import RULES_FILENAME, RuleSet, read_rules, write_rules

LAG = re.compile(r"event loop lag: max ([\d.]+) ms")
LOADED = re.compile(r"loaded (\d+) rules over \d+ songs in ([\d.]+) s .*generated_ns (\d+)\)")
MAX_EXTRA_LAG_MS = 25.0
MAX_P99_RATIO = 1.5
MAX_RSS_MIB = 200.0


def commit(data_dir: Path, ruleset: RuleSet, generated_ns: int) -> None:
    """Write the rules as mined again at ``generated_ns``, then the checkpoint (as the miner)."""
    header = dataclasses.replace(ruleset.header, generated_ns=generated_ns)
    fresh = dataclasses.replace(ruleset, header=header)
    write_rules(data_dir / RULES_FILENAME, fresh)
    checkpoint = Checkpoint(header.package_version, header.dataset_url, generated_ns)
    write_checkpoint(data_dir / CHECKPOINT_FILENAME, checkpoint)


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    wrk: WrkResult
    max_lag_ms: float
    peak_rss_mib: float
    loads: list[float]


@dataclass
class Bench:
    """The server under test and what the phases share."""

    server: ServerProcess
    data_dir: Path
    ruleset: RuleSet
    bodies: list[str]
    work: Path
    args: argparse.Namespace
    wrk_cpu: int | None

    def reload(self, count: int, every: float, stop: threading.Event, loads: list[float]) -> None:
        """Commit ``count`` new models ``every`` s apart; record each load time the server logs."""
        for _ in range(count):
            if stop.wait(every):
                return
            ns = time.time_ns()
            commit(self.data_dir, self.ruleset, ns)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                found = [m for line in self.server.logged("loaded ") if (m := LOADED.search(line))]
                done = [float(m.group(2)) for m in found if int(m.group(3)) == ns]
                if done:
                    loads.append(done[0])
                    break
                time.sleep(0.01)
            else:
                raise RuntimeError(f"the server did not load generation {ns} within 10 s")

    def sample_rss(self, stop: threading.Event, peak: list[int]) -> None:
        """Keep the largest VmRSS seen (KiB) in ``peak[0]``, sampling every 5 ms."""
        while not stop.wait(0.005):
            peak[0] = max(peak[0], self.server.memory_kib()[0])

    def phase(self, name: str) -> Phase:
        """One wrk run, with reloads when ``name`` is "reload", and what the server saw."""
        stop = threading.Event()
        loads: list[float] = []
        peak = [0]
        helpers = [threading.Thread(target=self.sample_rss, args=(stop, peak))]
        if name == "reload":
            count = self.args.reloads_per_phase
            every = self.args.phase_seconds / (count + 1)
            helpers.append(threading.Thread(target=self.reload, args=(count, every, stop, loads)))
        started = time.time()
        for helper in helpers:
            helper.start()
        result = run_wrk(
            f"{self.server.url}/api/recommend",
            self.bodies,
            self.work,
            duration=self.args.phase_seconds,
            cpu=self.wrk_cpu,
        )
        stop.set()
        for helper in helpers:
            helper.join(timeout=30)
        ended = time.time()
        # The probe logs each second's maximum: a line stamped after the phase's first second
        # and no later than its end covers only time inside the phase.
        lags = [
            float(m.group(1))
            for line in self.server.logged("event loop lag")
            if started + 1.0 <= log_time(line) <= ended and (m := LAG.search(line))
        ]
        return Phase(name, result, max(lags, default=float("nan")), peak[0] / 1024, loads)


def main() -> int:
    """Mine (or reuse) the rules, start the server, alternate steady and reload phases."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="steady/reload pairs")
    parser.add_argument(
        "--reloads-per-phase",
        type=int,
        default=1,
        help="new models committed in each reload phase, evenly spaced",
    )
    add_model_options(parser)
    args = parser.parse_args()
    server_cpu, wrk_cpu = cpu_pair()
    if wrk_cpu is not None:
        # Writing each new model (as the miner, which runs elsewhere) and sampling the RSS
        # stay off the server's CPU: threads started from here on inherit this.
        os.sched_setaffinity(0, {wrk_cpu})

    model, ranking = served_model(args)
    ruleset = read_rules(model / RULES_FILENAME)
    bodies = draw_bodies(2000, seed=2, dataset=args.dataset)
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="serve-reload-") as tmp:
        work, data_dir = Path(tmp), Path(tmp) / "data"
        data_dir.mkdir()
        commit(data_dir, ruleset, time.time_ns())
        server = ServerProcess(
            data_dir, env={"LOG_LEVEL": "DEBUG", "DRAIN_SECONDS": "0"}, cpu=server_cpu
        )
        server.start()
        bench = Bench(server, data_dir, ruleset, bodies, work, args, wrk_cpu)
        try:
            server.wait_ready()
            run_wrk(f"{server.url}/api/recommend", bodies, work, duration=2, cpu=wrk_cpu)  # warm
            for _ in range(args.rounds):
                phases.extend(bench.phase(name) for name in ("steady", "reload"))
        finally:
            status = server.stop()
        if status != 0:
            print(f"server exited with status {status}:\n{server.log()}", file=sys.stderr)
            return 1

    print(
        f"\n{ruleset.header.rule_count:,} rules ({ruleset.header.song_count:,} songs), "
        f"RANKING={ranking}; wrk 50 "
        f"connections, {args.phase_seconds:g} s per phase, {args.reloads_per_phase} new model(s) "
        f"per reload phase; server on CPU {server_cpu}, wrk on {wrk_cpu}"
    )
    print(
        f"{'phase':<8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'errors':>6} "
        f"{'loop lag max ms':>15} {'peak RSS MiB':>12} {'loads (s each)':>s}"
    )
    for p in phases:
        loads = ", ".join(f"{s:.2f}" for s in p.loads) or "-"
        print(
            f"{p.name:<8} {p.wrk.rate:>8.0f} {p.wrk.p50_us / 1000:>7.2f} "
            f"{p.wrk.p99_us / 1000:>7.2f} {p.wrk.max_us / 1000:>7.1f} {p.wrk.failures:>6} "
            f"{p.max_lag_ms:>15.1f} {p.peak_rss_mib:>12.1f} {loads}"
        )
    steady = [p for p in phases if p.name == "steady"]
    reload = [p for p in phases if p.name == "reload"]
    extra_lag = max(p.max_lag_ms for p in reload) - max(p.max_lag_ms for p in steady)
    p99_ratio = statistics.median(
        r.wrk.p99_us / s.wrk.p99_us for r, s in zip(reload, steady, strict=True)
    )
    errors = sum(p.wrk.failures for p in phases)
    peak_rss = max(p.peak_rss_mib for p in reload)
    reloads = sum(len(p.loads) for p in reload)
    print(
        f"\nmax loop lag, reload - steady: {extra_lag:+.1f} ms (target ≤ +{MAX_EXTRA_LAG_MS:g})\n"
        f"p99 reload / steady (median of rounds): {p99_ratio:.2f} (target ≤ {MAX_P99_RATIO:g})\n"
        f"errors: {errors} (target 0); reloads done: {reloads}\n"
        f"peak RSS while reloading: {peak_rss:.1f} MiB (target ≤ {MAX_RSS_MIB:g})"
    )
    ok = (
        extra_lag <= MAX_EXTRA_LAG_MS
        and p99_ratio <= MAX_P99_RATIO
        and errors == 0
        and peak_rss <= MAX_RSS_MIB
        and reloads > 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
