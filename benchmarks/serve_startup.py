"""Benchmark (c): process start → ``/readyz`` 200, large rule set against baselines.

``python -m http_api`` is started on a DATA_DIR that already holds rules, and ``/readyz`` is
polled every 2 ms until it answers 200. Measured side by side, alternating, in the same run:

- large: synth_dense mined by the real miner at the job's defaults (~970k rules, the most
  ``MIN_SUPPORT=auto`` keeps; cached in build/), or the DATA_DIR given with ``--data-dir``;
- tiny: the bundled sample mined at (0.025, 0.7, 8) (3,366 rules): the same start-up without
  the weight of the rules;
- ``python -c pass`` and ``python -c 'import http_api.__main__'`` (then ``os._exit``): the
  interpreter, and the imports every start pays.

Target: large ≤ 1.5 s (median).

    .venv/bin/python -m benchmarks.serve_startup [--runs 5] [--data-dir DIR] [--ranking best|sum]

Exit status 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._server import ROOT, ServerProcess, add_model_options, mined_rules, served_model

# The bundled sample, the default DATASET_URL: the small rule set start-up is compared with.
SAMPLE = ROOT / "mining" / "data" / "sample_playlists.csv.gz"
TARGET_SECONDS = 1.5
IMPORTS_ONLY = "import os, http_api.__main__; os._exit(0)"
LOADED = re.compile(r"loaded (\d+) rules over \d+ songs in ([\d.]+) s")


def time_command(command: list[str]) -> float:
    """Wall-clock seconds for a command to run to completion."""
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, timeout=60)
    return time.perf_counter() - started


def time_ready(data_dir: Path) -> tuple[float, int, float]:
    """Seconds from spawning the server to /readyz 200; the rules loaded; their load time."""
    server = ServerProcess(data_dir, env={"DRAIN_SECONDS": "0", "LOG_LEVEL": "INFO"})
    server.start()
    try:
        ready_at = server.wait_ready()
    finally:
        status = server.stop()
    if status != 0:
        raise RuntimeError(f"server exited with {status}:\n{server.log()}")
    [match] = [m for line in server.logged("loaded ") if (m := LOADED.search(line))]
    return ready_at - server.started_at, int(match.group(1)), float(match.group(2))


def main() -> int:
    """Alternate the four measurements ``--runs`` times; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    add_model_options(parser)
    args = parser.parse_args()
    (large_dir, ranking) = served_model(args)
    tiny_dir = mined_rules(SAMPLE, MIN_SUPPORT="0.025", MIN_CONFIDENCE="0.7", MAX_LEN="8")

    python, imports = [], []
    ready: dict[str, list[float]] = {"tiny": [], "large": []}
    loads: dict[str, list[float]] = {"tiny": [], "large": []}
    rules: dict[str, int] = {}
    for _ in range(args.runs):
        python.append(time_command([sys.executable, "-c", "pass"]))
        # os._exit: skip the interpreter's teardown (~50 ms), which a server start never pays.
        imports.append(time_command([sys.executable, "-c", IMPORTS_ONLY]))
        for name, data_dir in (("tiny", tiny_dir), ("large", large_dir)):
            seconds, rules[name], load = time_ready(data_dir)
            ready[name].append(seconds)
            loads[name].append(load)

    def median_ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.0f} ms"

    print(f"\nmedian of {args.runs} runs each, alternating; RANKING={ranking}")
    print(f"{'python -c pass':<46} {median_ms(python)}")
    print(f"{'python -c import http_api.__main__':<46} {median_ms(imports)}")
    for name in ("tiny", "large"):
        label = f"start → /readyz 200, {name}: {rules[name]:,} rules"
        print(
            f"{label:<46} {median_ms(ready[name])}"
            f"  (the load itself: {median_ms(loads[name]).strip()})"
        )
    large = statistics.median(ready["large"])
    ratio = large / statistics.median(ready["tiny"])
    print(
        f"\nlarge / tiny: {ratio:.2f}; large: {large:.2f} s (target ≤ {TARGET_SECONDS:g} s); "
        f"slowest large run: {max(ready['large']):.2f} s"
    )
    return 0 if large <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
