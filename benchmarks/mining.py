"""Benchmark: the whole mining job, per engine, against the naive pipeline, side by side.

Each run is its own subprocess, measured from outside: wall time, CPU time
(``ru_utime + ru_stime`` from ``os.wait4``, which includes the JVM Spark starts
once it is reaped) and peak memory of the whole process tree, sampled every
20 ms from /proc (the sum of RSS over the job and its descendants; for spark
the Python driver and the JVM that runs the local executors are shown apart).
CPU time is printed because on a shared machine wall time includes waiting for
a core; the targets are on wall time.

- *naive*: what most users write (pandas ``read_csv``, a dense one-hot DataFrame
  from mlxtend's ``TransactionEncoder``, mlxtend ``apriori`` + ``association_rules``,
  ``pickle``), at the same parameters. It can take very long and many GB, so it
  runs under a time limit and an address-space limit; when it hits one, the
  figure printed is the bound reached ("≥ X").
- *job, mlxtend* / *job, pyfim* / *job, spark*: ``python -m mining`` into a fresh
  DATA_DIR, each with ``--memory-limit-gib`` as its MINING_MEMORY_LIMIT; spark runs on
  ``--spark-master`` (local[2]) with the heaps the job derives from that budget
  (``mining.spark.memory_conf``).

    .venv/bin/python -m benchmarks.mining [PATH] [--runs pyfim,mlxtend,spark,naive]
        [--min-support 0.025] [--max-len 8] [--memory-limit-gib 3] [--spark-master local[2]]
        [--naive-timeout 900] [--naive-memory-gib 12]

PATH defaults to tests/data/synth_dense.csv.xz. Exit status 1 when a target of a run
that took part is missed: mlxtend job ≤ 0.6 × the naive wall time and ≤ 1 GiB peak RSS;
pyfim job ≤ 8 s (on the default dataset and parameters); every engine finds the same
number of rules.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mining.spark import memory_conf

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT / "tests" / "data" / "synth_dense.csv.xz"
MIN_SUPPORT, MIN_CONFIDENCE, MAX_LEN = 0.025, 0.7, 8
RUNS = ("pyfim", "mlxtend", "spark", "naive")
MLXTEND_WALL_RATIO_TARGET = 0.6
MLXTEND_RSS_TARGET_MIB = 1024
PYFIM_WALL_TARGET_SECONDS = 8.0


@dataclass(frozen=True)
class Run:
    """One measured child process."""

    name: str
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    finished: bool
    rules: str
    note: str = ""
    # Peak RSS of the job's Python process and of its descendants (Spark's JVM), in MiB.
    parts: dict[str, float] = field(default_factory=dict)


def naive_pipeline(
    dataset: Path, output: Path, memory_limit_bytes: int, parameters: Parameters
) -> None:
    """The pipeline most users write; prints its rule counts as JSON on stdout."""
    # Bounded, so that a pipeline needing more than the machine has fails with MemoryError.
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    import pandas as pd  # noqa: PLC0415 - only the naive child process needs these
    from mlxtend.frequent_patterns import apriori, association_rules  # noqa: PLC0415
    from mlxtend.preprocessing import TransactionEncoder  # noqa: PLC0415

    frame = pd.read_csv(dataset)
    baskets = frame.groupby("pid")["track_name"].apply(lambda s: sorted(set(s))).tolist()
    encoder = TransactionEncoder()
    onehot = pd.DataFrame(encoder.fit(baskets).transform(baskets), columns=encoder.columns_)
    itemsets = apriori(
        onehot, min_support=parameters.min_support, use_colnames=True, max_len=parameters.max_len
    )
    rules = association_rules(
        itemsets,
        num_itemsets=len(onehot),
        metric="confidence",
        min_threshold=parameters.min_confidence,
    )
    with open(output, "wb") as f:
        pickle.dump(rules, f)
    single = int((rules["consequents"].apply(len) == 1).sum())
    print(json.dumps({"itemsets": len(itemsets), "rules": len(rules), "single": single}))


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(os.path.join(entry.path, "stat"), "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # The command name is in parentheses and may hold spaces.
            parent = int(stat[stat.rfind(b")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (/proc/PID/stat, fields 14 and 15)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TreeSampler:
    """Peak RSS of a process, of its descendants and of both together, sampled from /proc."""

    def __init__(self, root: int, interval: float = 0.02) -> None:
        self.root, self.interval = root, interval
        self.peak_total = self.peak_root = self.peak_children = 0.0
        # The last CPU time seen of each descendant: a JVM that outlives its reaping parent
        # (pyspark's) is never counted by wait4.
        self.descendant_cpu: dict[int, float] = {}
        self.root_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            own = _rss_mib(self.root)
            self.root_cpu = max(self.root_cpu, _cpu_seconds(self.root))
            tree = self.tree()
            children = sum(_rss_mib(pid) for pid in tree)
            for pid in tree:
                self.descendant_cpu[pid] = max(self.descendant_cpu.get(pid, 0.0), _cpu_seconds(pid))
            self.peak_root = max(self.peak_root, own)
            self.peak_children = max(self.peak_children, children)
            self.peak_total = max(self.peak_total, own + children)
            self._stop.wait(self.interval)

    def tree(self) -> list[int]:
        """The root's descendants now."""
        children = _children()
        found, pending = [], list(children.get(self.root, []))
        while pending:
            pid = pending.pop()
            found.append(pid)
            pending.extend(children.get(pid, []))
        return found

    def stop(self) -> None:
        """Stop sampling (the last sample is taken before the child is reaped)."""
        self._stop.set()
        self._thread.join()


def measure(
    name: str, command: list[str], env: dict[str, str], timeout: float
) -> tuple[Run, str, str]:
    """Run ``command``; return its measurements, stdout and stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=err)
        sampler = TreeSampler(child.pid)
        finished = True
        while True:
            # WNOWAIT: the finished child stays a zombie (its /proc entry readable) until the
            # sampler has stopped; only then is it reaped.
            waited = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if waited is not None:
                break
            if time.monotonic() - started > timeout:
                # The whole tree: Spark's JVM would outlive its Python parent.
                for pid in [*sampler.tree(), child.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                finished = False
                break
            time.sleep(0.02)
        sampler.stop()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        # Popen must not reap the child again.
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    note = "" if finished else f"stopped at the {timeout:.0f} s limit"
    if finished and child.returncode != 0:
        last = stderr.strip().splitlines()[-1:] or [f"exit {child.returncode}"]
        note = f"failed: {last[0][:120]}"
    # wait4's figure (the child and the descendants it reaped) or the tree as last sampled,
    # whichever is more: a descendant the child never reaped is missing from the first, one
    # that ended between two samples from the second.
    cpu = usage.ru_utime + usage.ru_stime
    cpu = max(cpu, sampler.root_cpu + sum(sampler.descendant_cpu.values()))
    # The sampled tree peak; never below what the kernel recorded for the child alone.
    peak = max(sampler.peak_total, usage.ru_maxrss / 1024)
    parts = {"Python": sampler.peak_root, "JVM": sampler.peak_children}
    run = Run(name, seconds, cpu, peak, finished and not note, "", note, parts)
    return run, stdout, stderr


@dataclass(frozen=True)
class Parameters:
    """What every run mines with."""

    min_support: float
    min_confidence: float
    max_len: int


def run_naive(
    dataset: Path, work: Path, parameters: Parameters, timeout: float, memory_gib: float
) -> Run:
    command = [sys.executable, "-m", "benchmarks.mining", "--naive-child", str(dataset)]
    command.append(str(work / "rules.pkl"))
    command.append(str(int(memory_gib * 2**30)))
    command += [repr(parameters.min_support), repr(parameters.min_confidence)]
    command.append(str(parameters.max_len))
    run, stdout, _ = measure(
        "naive: apriori + association_rules + pickle", command, dict(os.environ), timeout
    )
    if run.finished:
        counts = json.loads(stdout.strip().splitlines()[-1])
        rules = f"{counts['rules']:,} ({counts['single']:,} single-consequent)"
        return Run(run.name, run.seconds, run.cpu_seconds, run.peak_rss_mib, True, rules)
    return run


def run_job(
    dataset: Path,
    work: Path,
    engine: str,
    parameters: Parameters,
    *,
    spark_master: str,
    memory_limit: int,
    timeout: float,
) -> Run:
    env = dict(os.environ)
    env.update(
        DATASET_URL=str(dataset),
        DATA_DIR=str(work / f"data-{engine}"),
        MIN_SUPPORT=repr(parameters.min_support),
        MIN_CONFIDENCE=repr(parameters.min_confidence),
        MAX_LEN=str(parameters.max_len),
        MINING_ENGINE=engine,
        MINING_MEMORY_LIMIT=str(memory_limit),
        LOG_LEVEL="INFO",
    )
    name = f"job: python -m mining, {engine}"
    if engine == "spark":
        # The job derives its heaps from its memory budget (mining.spark.memory_conf).
        env.update(SPARK_MASTER=spark_master)
        name += f" {spark_master}, heap {memory_conf(memory_limit)['spark.driver.memory']}"
    run, _, stderr = measure(name, [sys.executable, "-m", "mining"], env, timeout)
    found = re.search(r"rules: (\d+) rules", stderr)
    rules = f"{int(found.group(1)):,}" if found else "?"
    return Run(
        run.name,
        run.seconds,
        run.cpu_seconds,
        run.peak_rss_mib,
        run.finished,
        rules,
        run.note,
        run.parts if engine == "spark" else {},
    )


def bound(run: Run, value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if run.finished else f"≥ {value:,.1f} {unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument(
        "--runs", default=",".join(RUNS), help="comma-separated, of " + ", ".join(RUNS)
    )
    parser.add_argument("--min-support", type=float, default=MIN_SUPPORT)
    parser.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE)
    parser.add_argument("--max-len", type=int, default=MAX_LEN)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--memory-limit-gib", type=float, default=3.0, metavar="GIB")
    parser.add_argument("--job-timeout", type=float, default=3600.0, metavar="SECONDS")
    parser.add_argument("--naive-timeout", type=float, default=900.0, metavar="SECONDS")
    parser.add_argument("--naive-memory-gib", type=float, default=12.0, metavar="GIB")
    parser.add_argument("--naive-child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_child:
        dataset, output, memory_limit, support, confidence, max_len = args.naive_child
        naive_pipeline(
            Path(dataset),
            Path(output),
            int(memory_limit),
            Parameters(float(support), float(confidence), int(max_len)),
        )
        return 0
    chosen = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown} (choose from {', '.join(RUNS)})")
    parameters = Parameters(args.min_support, args.min_confidence, args.max_len)
    memory_limit = int(args.memory_limit_gib * 2**30)
    dataset = args.dataset.resolve()
    print(
        f"dataset {dataset.relative_to(ROOT) if dataset.is_relative_to(ROOT) else dataset}: "
        f"min_support {parameters.min_support}, min_confidence {parameters.min_confidence}, "
        f"max_len {parameters.max_len}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="mining-bench-") as tmp:
        work = Path(tmp)
        for name in chosen:
            if name == "naive":
                runs[name] = run_naive(
                    dataset, work, parameters, args.naive_timeout, args.naive_memory_gib
                )
            else:
                runs[name] = run_job(
                    dataset,
                    work,
                    name,
                    parameters,
                    spark_master=args.spark_master,
                    memory_limit=memory_limit,
                    timeout=args.job_timeout,
                )
            print(f"    {runs[name].name}: {runs[name].seconds:.1f} s", flush=True)
    print_table(list(runs.values()), runs.get("naive"))
    checks = target_checks(runs, parameters, args.dataset == DEFAULT_DATASET)
    for label, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1


def print_table(runs: list[Run], naive: Run | None) -> None:
    """One line per run; the JVM's and the Python driver's peaks apart for spark."""
    header = f"{'run':<58} {'wall':>12} {'CPU':>12} {'peak RSS':>14}"
    header += f" {'× naive wall':>13}" if naive else ""
    print(header + "  rules")
    for run in runs:
        line = (
            f"{run.name:<58} {bound(run, run.seconds, 's'):>12} "
            f"{bound(run, run.cpu_seconds, 's'):>12} {bound(run, run.peak_rss_mib, 'MiB'):>14}"
        )
        if naive:
            ratio = run.seconds / naive.seconds
            shown = f"≤ {ratio:.3f}" if not naive.finished and run is not naive else f"{ratio:.3f}"
            line += f" {shown:>13}"
        print(line + f"  {run.rules}" + (f"  [{run.note}]" if run.note else ""))
        if run.parts:
            print(
                "    of which, each at its own peak: "
                + ", ".join(f"{part} {mib:,.0f} MiB" for part, mib in run.parts.items())
            )


def target_checks(
    runs: dict[str, Run], parameters: Parameters, default_dataset: bool
) -> list[tuple[str, bool]]:
    """The targets of the runs that took part; the speed targets only on their own dataset."""
    checks = []
    naive, mlxtend, pyfim = runs.get("naive"), runs.get("mlxtend"), runs.get("pyfim")
    defaults = parameters == Parameters(MIN_SUPPORT, MIN_CONFIDENCE, MAX_LEN)
    if mlxtend and naive:
        checks.append(
            (
                f"mlxtend job ≤ {MLXTEND_WALL_RATIO_TARGET} × naive wall",
                mlxtend.finished and mlxtend.seconds <= MLXTEND_WALL_RATIO_TARGET * naive.seconds,
            )
        )
    if mlxtend:
        checks.append(
            (
                f"mlxtend job peak RSS ≤ {MLXTEND_RSS_TARGET_MIB} MiB",
                mlxtend.finished and mlxtend.peak_rss_mib <= MLXTEND_RSS_TARGET_MIB,
            )
        )
    if pyfim and default_dataset and defaults:
        checks.append(
            (
                f"pyfim job ≤ {PYFIM_WALL_TARGET_SECONDS:g} s wall",
                pyfim.finished and pyfim.seconds <= PYFIM_WALL_TARGET_SECONDS,
            )
        )
    jobs = [run for name, run in runs.items() if name != "naive"]
    if len(jobs) > 1:
        checks.append(
            (
                "every engine finds the same number of rules",
                all(run.finished for run in jobs) and len({run.rules for run in jobs}) == 1,
            )
        )
    return checks


if __name__ == "__main__":
    sys.exit(main())
