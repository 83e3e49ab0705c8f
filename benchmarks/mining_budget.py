"""Benchmark: the mining job over a grid of parameters, measured from outside.

For each dataset and each combination of MIN_SUPPORT, AUTO_SUPPORT_FLOOR,
MIN_CONFIDENCE, MAX_LEN and engine, ``python -m mining`` runs in a fresh DATA_DIR
as its own subprocess: wall time, CPU time and the peak RSS of its processes
(``ru_maxrss`` from ``os.wait4``: the job and its guarded worker), the exit status,
the playlist count the support resolved to, the itemsets and the rules. A failing
run shows its one-line error. This is how the candidate defaults of
docs/mining-memory.md were measured:

    .venv/bin/python -m benchmarks.mining_budget DATASET [DATASET ...] \\
        [--support auto] [--floors 1 2] [--confidences 0.05 0.1] [--max-len 2] \\
        [--engines pyfim] [--memory-limit SIZE]

Without ``--memory-limit`` the job takes its default budget. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import tempfile
from pathlib import Path

from benchmarks.mining import ROOT, measure

PATTERNS = {
    "count": re.compile(r"mine: (\d+) frequent itemsets \(in >= (\d+) of (\d+) playlists"),
    "rules": re.compile(r"done: (\d+) rules"),
    "capped": re.compile(r"auto is (\d+) playlists?, which keeps"),
    "budget": re.compile(r"memory: budget ([\d.]+ [KMG]iB)"),
}


def run(dataset: Path, work: Path, values: dict[str, str], timeout: float) -> list[str]:
    """One job run; the table row."""
    env = {k: v for k, v in os.environ.items() if k not in values}
    env.update(values, DATASET_URL=str(dataset), DATA_DIR=str(work / "data"), LOG_LEVEL="INFO")
    measured, _, stderr = measure("job", [sys.executable, "-m", "mining"], env, timeout)
    found = {name: pattern.search(stderr) for name, pattern in PATTERNS.items()}
    itemsets = count = rules = "-"
    if found["count"]:
        itemsets = f"{int(found['count'].group(1)):,}"
        count = found["count"].group(2)
    if found["capped"]:
        count = f"{count} → {found['capped'].group(1)} (rule cap)"
    if found["rules"]:
        rules = f"{int(found['rules'].group(1)):,}"
    lines = stderr.strip().splitlines()
    if measured.finished:
        outcome = "ok"
    elif measured.note.startswith("failed") and lines:
        outcome = lines[-1]
    else:
        outcome = measured.note
    budget = found["budget"].group(1) if found["budget"] else "?"
    return [
        values["MIN_SUPPORT"]
        + (f" (floor {values['AUTO_SUPPORT_FLOOR']})" if values["MIN_SUPPORT"] == "auto" else ""),
        values["MIN_CONFIDENCE"],
        values["MAX_LEN"],
        values["MINING_ENGINE"],
        count,
        itemsets,
        rules,
        f"{measured.seconds:.1f} s",
        f"{measured.cpu_seconds:.1f} s",
        f"{measured.peak_rss_mib:,.0f} MiB",
        budget,
        outcome.replace("|", "/"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--support", nargs="+", default=["auto"])
    parser.add_argument("--floors", nargs="+", default=["1", "2"])
    parser.add_argument("--confidences", nargs="+", default=["0.05", "0.1"])
    parser.add_argument("--max-len", nargs="+", default=["2"])
    parser.add_argument("--engines", nargs="+", default=["pyfim"])
    parser.add_argument("--memory-limit", default="")
    parser.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS")
    args = parser.parse_args()
    header = [
        "MIN_SUPPORT",
        "MIN_CONFIDENCE",
        "MAX_LEN",
        "engine",
        "count",
        "itemsets",
        "rules",
        "wall",
        "CPU",
        "peak RSS",
        "budget",
        "outcome",
    ]
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    for dataset in args.datasets:
        shown = dataset.resolve()
        print(f"\n{shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown}\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        grid = itertools.product(
            args.support, args.confidences, args.max_len, args.engines, args.floors
        )
        seen = set()
        for support, confidence, max_len, engine, floor in grid:
            # The floor only matters for auto: other supports run once.
            key = (support, confidence, max_len, engine, floor if support == "auto" else "")
            if key in seen:
                continue
            seen.add(key)
            values = {
                "MIN_SUPPORT": support,
                "MIN_CONFIDENCE": confidence,
                "MAX_LEN": max_len,
                "MINING_ENGINE": engine,
                "AUTO_SUPPORT_FLOOR": floor,
            }
            if args.memory_limit:
                values["MINING_MEMORY_LIMIT"] = args.memory_limit
            with tempfile.TemporaryDirectory(prefix="mining-budget-") as tmp:
                row = run(dataset.resolve(), Path(tmp), values, args.timeout)
            print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
