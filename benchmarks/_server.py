"""Plumbing shared by the serving benchmarks: rules from the real miner, a server subprocess, wrk.

- :func:`mined_rules` runs ``python -m mining`` (pyfim) on ``tests/data/synth_dense.csv.xz`` (at
  the job's default parameters unless told otherwise) into ``build/benchmarks/`` once; later
  calls are the miner's own up-to-date skip.
  :func:`add_model_options` and :func:`served_model` let a benchmark serve another DATA_DIR
  (``--data-dir``, e.g. mined with other parameters), draw requests from another dataset
  (``--dataset``) and set the servers' ``RANKING`` (``--ranking``).
- :func:`dataset_playlists` reads a playlists CSV as the miner does; :func:`draw_bodies` makes
  request bodies of 1-5 songs, each drawn from one playlist.
- :class:`ServerProcess` runs ``python -m http_api`` on a free loopback port (PORT=0, the port
  read from its log), keeps its log lines with their times, waits for ``/readyz`` and reads its
  memory from ``/proc``.
- :func:`run_wrk` drives a URL with wrk (Debian package; ``scripts/ensure-system-packages
  wrk:wrk``) cycling the bodies, and returns rate, latency percentiles, max and errors.

Everything is loopback-only and bounded in time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

from mining.reader import read_playlists
from recommender.engine import DEFAULT_RANKING, RANKINGS

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT / "tests" / "data" / "synth_dense.csv.xz"
CACHE = ROOT / "build" / "benchmarks"
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"

WRK_SCRIPT = """
local requests = {}
local i = 0

function init(args)
  -- Formatted here, not at load time: wrk.format fills in Host only once wrk.host is known.
  for body in io.lines(os.getenv("BENCH_BODIES")) do
    requests[#requests + 1] = wrk.format(
      "POST", "/api/recommend", {["Content-Type"] = "application/json"}, body)
  end
  i = math.random(#requests)
end

function request()
  i = i % #requests + 1
  return requests[i]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d %d\\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# The job's mining parameters: the caller's environment never sets them for a benchmark model.
MINING_PARAMETERS = (
    "MIN_SUPPORT",
    "MIN_CONFIDENCE",
    "MAX_LEN",
    "AUTO_SUPPORT_FLOOR",
    "AUTO_MAX_RULES",
)


def mined_rules(dataset: Path = DATASET, **parameters: str) -> Path:
    """The DATA_DIR holding ``dataset`` mined by the real miner (cached) with the job's default
    parameters, except those given (``MIN_SUPPORT="0.025"``, ...)."""
    given = "-".join(f"{name.lower()}={value}" for name, value in sorted(parameters.items()))
    data_dir = CACHE / f"{dataset.name.split('.')[0]}-{given or 'defaults'}"
    env = {name: value for name, value in os.environ.items() if name not in MINING_PARAMETERS}
    env.update(DATASET_URL=str(dataset), DATA_DIR=str(data_dir), **parameters)
    env.update(MINING_ENGINE="pyfim", LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "-m", "mining"], cwd=ROOT, env=env, check=True, timeout=900)
    return data_dir


def mined_model(dataset: Path, min_support: str | None) -> Path:
    """``dataset`` mined at the job's defaults, or at ``min_support`` with the others'."""
    if min_support is None:
        return mined_rules(dataset)
    return mined_rules(dataset, MIN_SUPPORT=min_support)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options naming the model a serving benchmark serves and the requests it sends."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="serve this DATA_DIR (rules and checkpoint, as python -m mining writes them) "
        "instead of mining --dataset",
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        default=DATASET,
        help="the playlists requests are drawn from (and mined, without --data-dir); plain CSV, "
        ".gz or .xz",
    )
    parser.add_argument(
        "--min-support",
        help="MIN_SUPPORT when mining --dataset (default: the job's; the other parameters are "
        "the job's defaults)",
    )
    parser.add_argument(
        "--ranking",
        choices=RANKINGS,
        help=f"the servers' RANKING (default: the server's own, {DEFAULT_RANKING})",
    )


def served_model(args: argparse.Namespace) -> tuple[Path, str]:
    """The DATA_DIR to serve (mined when not given) and the ranking, which goes into the
    environment every server process of this run inherits."""
    if args.ranking is not None:
        os.environ["RANKING"] = args.ranking
    data_dir = args.data_dir or mined_model(args.dataset, args.min_support)
    return data_dir, os.environ.get("RANKING", DEFAULT_RANKING)


def dataset_playlists(dataset: Path) -> list[list[str]]:
    """The distinct songs of each playlist of a playlists CSV (plain, gzip or xz), read by the
    miner's own reader (songs by descending popularity)."""
    transactions = read_playlists(dataset).transactions
    names = transactions.song_names
    return [
        [names[song] for song in transactions.playlist(p).tolist()]
        for p in range(transactions.playlists)
    ]


def draw_bodies(count: int, seed: int, dataset: Path = DATASET) -> list[str]:
    """``count`` JSON bodies of 1-5 distinct songs, each from one playlist of ``dataset``."""
    playlists = dataset_playlists(dataset)
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        songs = rng.choice(playlists)
        bodies.append(json.dumps({"songs": rng.sample(songs, rng.randint(1, min(5, len(songs))))}))
    return bodies


def pinned(cpu: int | None, command: list[str]) -> list[str]:
    """``command`` restricted to one CPU with taskset (None: not pinned)."""
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


# The CPUs the server and the load generator are pinned to, one each.
PINNED_CPUS = (0, 1)


def cpu_pair() -> tuple[int | None, int | None]:
    """(server CPU, load generator CPU) when there are two CPUs and taskset, else no pinning."""
    if (os.cpu_count() or 1) >= len(PINNED_CPUS) and shutil.which("taskset"):
        return PINNED_CPUS
    return None, None


def http_get(url: str, timeout: float = 2.0) -> int:
    """The status of a GET (an error status too); raises OSError if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def log_time(line: str) -> float:
    """Wall-clock time of a server log line (its ``asctime`` prefix)."""
    return dt.datetime.strptime(line[:23], LOG_TIME_FORMAT).timestamp()


@dataclass
class ServerProcess:
    """``python -m http_api`` as a subprocess, with its log lines (wall-clock time, text)."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    cpu: int | None = None
    # Lines containing this are read (the server pays for writing them) but not kept: an
    # access log under wrk would otherwise pile up hundreds of thousands of them.
    discard: str | None = None
    started_at: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    _reader: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until its log names the port it listens on."""
        env = dict(os.environ, HOST="127.0.0.1", PORT="0", DATA_DIR=str(self.data_dir))
        env.update(self.env)
        self.started_at = time.time()
        self.process = subprocess.Popen(
            pinned(self.cpu, [sys.executable, "-m", "http_api"]),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self.url:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not listen within {timeout:g} s:\n{self.log()}")
            time.sleep(0.002)

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            if self.discard is not None and self.discard in line:
                continue
            self.lines.append((time.time(), line))
            if not self.url and (match := LISTENING.search(line)):
                self.url = f"http://127.0.0.1:{match.group(1)}"

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Poll /readyz every 2 ms until 200; return the wall-clock time it answered 200."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if http_get(f"{self.url}/readyz", timeout=1.0) == HTTPStatus.OK:
                    return time.time()
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready within {timeout:g} s:\n{self.log()}")
            time.sleep(0.002)

    def log(self) -> str:
        """Everything it logged so far."""
        return "\n".join(line for _, line in self.lines)

    def logged(self, text: str, since: float = 0.0) -> list[str]:
        """Log lines containing ``text`` stamped at or after ``since`` (wall clock)."""
        return [line for _, line in self.lines if text in line and log_time(line) >= since]

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the server in KiB: resident now, and its peak so far."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB$", status, re.MULTILINE))
        return int(values["VmRSS"]), int(values["VmHWM"])

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM; return the exit status (SIGKILL after ``timeout``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return status


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: counts, latencies in µs, and its socket/status errors."""

    requests: int
    duration_us: int
    p50_us: int
    p99_us: int
    max_us: int
    errors: dict[str, int]

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / (self.duration_us / 1e6)

    @property
    def failures(self) -> int:
        """Requests that failed in any way (connect, read, write, non-2xx, timeout)."""
        return sum(self.errors.values())


def run_wrk(
    url: str,
    bodies: list[str],
    work_dir: Path,
    *,
    duration: float,
    connections: int = 50,
    cpu: int | None = None,
) -> WrkResult:
    """Drive ``url`` for ``duration`` s with wrk cycling ``bodies`` (one thread)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is missing: scripts/ensure-system-packages wrk:wrk")
    script, bodies_path = work_dir / "cycle.lua", work_dir / "bodies.jsonl"
    script.write_text(WRK_SCRIPT, encoding="utf-8")
    bodies_path.write_text("\n".join(bodies) + "\n", encoding="utf-8")
    command = pinned(
        cpu,
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
        ],
    )
    output = subprocess.run(
        [*command, url],
        env=dict(os.environ, BENCH_BODIES=str(bodies_path)),
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    match = re.search(r"^RESULT ((?:\d+ ?){10})$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no RESULT line:\n{output}")
    requests, duration_us, p50, p99, longest, *errors = (int(v) for v in match.group(1).split())
    kinds = ("connect", "read", "write", "status", "timeout")
    return WrkResult(
        requests, duration_us, p50, p99, longest, dict(zip(kinds, errors, strict=True))
    )
