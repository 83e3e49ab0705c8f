"""Benchmark: the whole mining job, per engine, against the naive pipeline, side by side.

Each run is its own subprocess, measured from outside: wall time, CPU time and
peak RSS (``ru_utime + ru_stime`` and ``ru_maxrss`` of that child, from
``os.wait4``). CPU time is printed because on a shared machine wall time
includes waiting for a core; the targets are on wall time.

- *naive*: what most users write (pandas ``read_csv``, a dense one-hot DataFrame
  from mlxtend's ``TransactionEncoder``, mlxtend ``apriori`` + ``association_rules``,
  ``pickle``), at the same parameters. It can take very long and many GB, so it
  runs under a time limit and an address-space limit; when it hits one, the
  figure printed is the bound reached ("≥ X").
- *job, mlxtend* / *job, pyfim*: ``python -m mining`` into a fresh DATA_DIR.

    .venv/bin/python -m benchmarks.mining [PATH] [--naive-timeout 900] [--naive-memory-gib 12]

PATH defaults to tests/data/synth_dense.csv.xz. Exit status 1 when a target is
missed: mlxtend job ≤ 0.6 × the naive wall time and ≤ 1 GiB peak RSS; pyfim job ≤ 8 s.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT / "tests" / "data" / "synth_dense.csv.xz"
MIN_SUPPORT, MIN_CONFIDENCE, MAX_LEN = 0.025, 0.7, 8
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


def naive_pipeline(dataset: Path, output: Path, memory_limit_bytes: int) -> None:
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
    itemsets = apriori(onehot, min_support=MIN_SUPPORT, use_colnames=True, max_len=MAX_LEN)
    rules = association_rules(
        itemsets, num_itemsets=len(onehot), metric="confidence", min_threshold=MIN_CONFIDENCE
    )
    with open(output, "wb") as f:
        pickle.dump(rules, f)
    single = int((rules["consequents"].apply(len) == 1).sum())
    print(json.dumps({"itemsets": len(itemsets), "rules": len(rules), "single": single}))


def measure(
    name: str, command: list[str], env: dict[str, str], timeout: float
) -> tuple[Run, str, str]:
    """Run ``command``; return its measurements, stdout and stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=err)
        finished = True
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                child.kill()
                _, status, usage = os.wait4(child.pid, 0)
                finished = False
                break
            time.sleep(0.02)
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
    cpu = usage.ru_utime + usage.ru_stime
    run = Run(name, seconds, cpu, usage.ru_maxrss / 1024, finished and not note, "", note)
    return run, stdout, stderr


def run_naive(dataset: Path, work: Path, timeout: float, memory_gib: float) -> Run:
    command = [sys.executable, "-m", "benchmarks.mining", "--naive-child", str(dataset)]
    command.append(str(work / "rules.pkl"))
    command.append(str(int(memory_gib * 2**30)))
    run, stdout, _ = measure(
        "naive: apriori + association_rules + pickle", command, dict(os.environ), timeout
    )
    if run.finished:
        counts = json.loads(stdout.strip().splitlines()[-1])
        rules = f"{counts['rules']:,} ({counts['single']:,} single-consequent)"
        return Run(run.name, run.seconds, run.cpu_seconds, run.peak_rss_mib, True, rules)
    return run


def run_job(dataset: Path, work: Path, engine: str) -> Run:
    env = dict(os.environ)
    env.update(
        DATASET_URL=str(dataset),
        DATA_DIR=str(work / f"data-{engine}"),
        MIN_SUPPORT=str(MIN_SUPPORT),
        MIN_CONFIDENCE=str(MIN_CONFIDENCE),
        MAX_LEN=str(MAX_LEN),
        MINING_ENGINE=engine,
        LOG_LEVEL="INFO",
    )
    run, _, stderr = measure(
        f"job: python -m mining, {engine}", [sys.executable, "-m", "mining"], env, 1800
    )
    found = re.search(r"rules: (\d+) rules", stderr)
    rules = f"{int(found.group(1)):,}" if found else "?"
    return Run(
        run.name, run.seconds, run.cpu_seconds, run.peak_rss_mib, run.finished, rules, run.note
    )


def bound(run: Run, value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if run.finished else f"≥ {value:,.1f} {unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--naive-timeout", type=float, default=900.0, metavar="SECONDS")
    parser.add_argument("--naive-memory-gib", type=float, default=12.0, metavar="GIB")
    parser.add_argument("--naive-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_child:
        dataset, output, memory_limit = args.naive_child
        naive_pipeline(Path(dataset), Path(output), int(memory_limit))
        return 0
    dataset = args.dataset.resolve()
    print(
        f"dataset {dataset.relative_to(ROOT) if dataset.is_relative_to(ROOT) else dataset}: "
        f"min_support {MIN_SUPPORT}, min_confidence {MIN_CONFIDENCE}, max_len {MAX_LEN}; "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="mining-bench-") as tmp:
        work = Path(tmp)
        runs = [
            run_job(dataset, work, "pyfim"),
            run_job(dataset, work, "mlxtend"),
            run_naive(dataset, work, args.naive_timeout, args.naive_memory_gib),
        ]
    naive = runs[-1]
    print(f"{'run':<46} {'wall':>12} {'CPU':>12} {'peak RSS':>14} {'× naive wall':>13}  rules")
    for run in runs:
        ratio = run.seconds / naive.seconds
        shown = f"≤ {ratio:.3f}" if not naive.finished and run is not naive else f"{ratio:.3f}"
        print(
            f"{run.name:<46} {bound(run, run.seconds, 's'):>12} "
            f"{bound(run, run.cpu_seconds, 's'):>12} "
            f"{bound(run, run.peak_rss_mib, 'MiB'):>14} {shown:>13}  {run.rules}"
            + (f"  [{run.note}]" if run.note else "")
        )
    pyfim, mlxtend = runs[0], runs[1]
    checks = [
        (
            f"mlxtend job ≤ {MLXTEND_WALL_RATIO_TARGET} × naive wall",
            mlxtend.finished and mlxtend.seconds <= MLXTEND_WALL_RATIO_TARGET * naive.seconds,
        ),
        (
            f"mlxtend job peak RSS ≤ {MLXTEND_RSS_TARGET_MIB} MiB",
            mlxtend.finished and mlxtend.peak_rss_mib <= MLXTEND_RSS_TARGET_MIB,
        ),
        (
            f"pyfim job ≤ {PYFIM_WALL_TARGET_SECONDS:g} s wall",
            pyfim.finished and pyfim.seconds <= PYFIM_WALL_TARGET_SECONDS,
        ),
    ]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
