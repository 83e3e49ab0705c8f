"""Benchmark (a): ``POST /api/recommend`` throughput against a bare aiohttp endpoint, side by side.

Both servers run as subprocesses on loopback, pinned to the same CPU (wrk gets the other one
when there are two), and wrk (50 connections) drives each with the same cycling 1-5-song
bodies drawn from the dataset's playlists. The real server is ``python -m http_api`` over
synth_dense mined by the real miner (cached under ``build/``); the baseline is a bare aiohttp
POST handler returning precomputed JSON (a real answer captured from the real server). Rounds
alternate baseline/real so drift hits both.

Printed per run: req/s, p50, p99, failures, and the server's CPU time per request (all its
threads, from /proc). The target is the req/s ratio (≥ 0.6); the CPU-per-request ratio is the
cross-check that does not move when other processes take CPU from the servers.

``--access-log`` adds the real server with ``ACCESS_LOG=1`` ("logged": one text line per request
on its stderr, a pipe this process reads, as a container runtime reads it), to price the access
log against the same server without it.

``--split`` adds two servers to every round, to show where the CPU per request goes: "app" is
the real application (``http_api.app.init_app``: route wrappers, metrics, validation, handler)
over the same rules without the actor system, and "app-fixed" the same with every answer's
song list fixed (the recommender not consulted). Their differences split the real server's
CPU per request into aiohttp itself, the HTTP layer, the recommendation and the actor system.

    .venv/bin/python -m benchmarks.serve_throughput [--duration 10] [--rounds 3] [--split]
        [--access-log] [--data-dir DIR --dataset CSV] [--ranking best|sum]

Exit status 1 when the req/s ratio is below the target or any request failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from aiohttp import web

from benchmarks._server import (
    ROOT,
    ServerProcess,
    WrkResult,
    add_model_options,
    cpu_pair,
    draw_bodies,
    http_get,
    pinned,
    run_wrk,
    served_model,
)
from http_api.app import init_app
from http_api.settings import Settings
from mining.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from recommender.engine import Recommender
from recommender.loading import load_snapshot
from recommender.snapshot import Snapshot

TARGET_RATIO = 0.6
HELPER_READY_SECONDS = 60.0


@dataclass(frozen=True)
class Run:
    """One wrk run against one server, with the server's CPU time during it."""

    wrk: WrkResult
    server_cpu_seconds: float

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU time (all threads, user + system) per completed request."""
        return self.server_cpu_seconds * 1e6 / max(self.wrk.requests, 1)

    def row(self, name: str) -> str:
        """One line of the results table."""
        w = self.wrk
        return (
            f"{name:<10} {w.rate:>9.0f} {w.p50_us / 1000:>8.2f} {w.p99_us / 1000:>8.2f} "
            f"{w.failures:>8} {self.cpu_us_per_request:>11.0f}"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: str) -> tuple[int, bytes]:
    """Status and body of a JSON POST."""
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def run_bare_server(port: int, response_path: Path) -> None:
    """The baseline: an aiohttp POST endpoint answering precomputed JSON, nothing else."""
    body = response_path.read_bytes()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/api/recommend", answer)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@dataclass(frozen=True, eq=False)
class FixedAnswer(Recommender):
    """A recommender whose every answer is one precomputed song list (the engine skipped)."""

    answer: bytes = b"[]"

    def explain_json(
        self, songs: Sequence[str], limit: int = 10, *, ranking: str | None = None
    ) -> tuple[bytes, int, list[str]]:
        """The fixed list, none of it from rules, whatever the query."""
        return self.answer, 0, []


class LoadedGate:
    """A RulesGate over one snapshot, never draining (no actor system behind it)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot: Snapshot | None = snapshot
        self.draining = False

    async def wait_for_snapshot(self, timeout: float) -> Snapshot | None:
        """The snapshot at once: it is there from the start."""
        return self.snapshot


def run_app_server(port: int, data_dir: Path, fixed_answer: Path | None) -> None:
    """The real application over ``data_dir``'s rules, without actors; with ``fixed_answer``
    (a JSON song list), every answer holds that list."""
    snapshot = load_snapshot(data_dir, read_checkpoint(data_dir / CHECKPOINT_FILENAME))
    if fixed_answer is not None:
        recommender = snapshot.recommender
        fixed = FixedAnswer(
            **{f.name: getattr(recommender, f.name) for f in dataclasses.fields(Recommender)},
            answer=fixed_answer.read_bytes(),
        )
        snapshot = dataclasses.replace(snapshot, recommender=fixed)
    # From the environment, as the real server reads it (RANKING included).
    app = init_app(LoadedGate(snapshot), Settings.from_env())
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@contextmanager
def helper_server(mode: str, arguments: list[str], cpu: int | None) -> Iterator[tuple[str, int]]:
    """Run this module in a server ``mode`` on a free port until it answers ``/readyz``;
    yield its URL and pid."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "benchmarks.serve_throughput", mode, str(port), *arguments]
    process = subprocess.Popen(pinned(cpu, command), cwd=ROOT)
    try:
        deadline = time.monotonic() + HELPER_READY_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{mode} server exited with {process.returncode}")
            try:
                if http_get(f"{url}/readyz", timeout=1.0) == HTTPStatus.OK:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode} server not ready after {HELPER_READY_SECONDS:g} s")
            time.sleep(0.02)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def handler_time_histogram(exposition: str) -> str:
    """What the real server's own ``http_request_duration_seconds`` says of the recommend
    requests it answered: the share in each bucket and Prometheus-style quantile estimates."""
    pattern = re.compile(
        r'^http_request_duration_seconds_bucket\{le="([^"]+)",method="POST",'
        r'route="/api/recommend"\} (\S+)$',
        re.MULTILINE,
    )
    cumulative = [(float(bound), float(count)) for bound, count in pattern.findall(exposition)]
    total = cumulative[-1][1]
    shares, previous = [], 0.0
    for bound, count in cumulative:
        if count > previous:
            shares.append(f"≤{bound * 1e6:g} µs {100 * (count - previous) / total:.2f} %")
        previous = count

    def quantile(q: float) -> float:
        # Linear inside the bucket, as histogram_quantile() does.
        rank, lower, below = q * total, 0.0, 0.0
        for bound, count in cumulative:
            if count >= rank:
                return lower + (bound - lower) * (rank - below) / max(count - below, 1)
            lower, below = bound, count
        return math.inf

    return (
        f"server's own histogram, POST /api/recommend ({total:.0f} requests): "
        f"{'; '.join(shares)}; histogram_quantile p50 {quantile(0.5) * 1e6:.0f} µs, "
        f"p99 {quantile(0.99) * 1e6:.0f} µs"
    )


def main() -> int:
    """Mine (or reuse) the rules, start the servers, run wrk rounds, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="baseline/real pairs")
    parser.add_argument("--connections", type=int, default=50)
    add_model_options(parser)
    parser.add_argument("--queries", type=int, default=2000, help="distinct bodies cycled")
    parser.add_argument(
        "--split",
        action="store_true",
        help="also run the app without actors, and with a fixed answer",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="also run the real server with ACCESS_LOG=1",
    )
    parser.add_argument(
        "--bare-server", nargs=2, metavar=("PORT", "RESPONSE"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--app-server", nargs=3, metavar=("PORT", "DATA_DIR", "ANSWER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.bare_server:
        run_bare_server(int(args.bare_server[0]), Path(args.bare_server[1]))
        return 0
    if args.app_server:
        port, data, answer = args.app_server
        run_app_server(int(port), Path(data), Path(answer) if answer != "-" else None)
        return 0
    server_cpu, wrk_cpu = cpu_pair()
    started = time.monotonic()
    data_dir, ranking = served_model(args)
    print(f"miner: {time.monotonic() - started:.1f} s (a skip when the cache is current)")
    bodies = draw_bodies(args.queries, seed=1, dataset=args.dataset)
    names = ["bare", "app-fixed", "app", "recommend"] if args.split else ["bare", "recommend"]
    names += ["logged"] if args.access_log else []
    results: dict[str, list[Run]] = {name: [] for name in names}

    real = ServerProcess(data_dir, cpu=server_cpu)
    real.start()
    logged = ServerProcess(
        data_dir, env={"ACCESS_LOG": "1"}, cpu=server_cpu, discard="http_api.access"
    )
    if args.access_log:
        logged.start()
    with tempfile.TemporaryDirectory(prefix="serve-throughput-") as tmp, ExitStack() as helpers:
        work = Path(tmp)
        try:
            real.wait_ready()
            assert real.process is not None
            if args.access_log:
                logged.wait_ready()
            ready = json.loads(urllib.request.urlopen(f"{real.url}/readyz").read())
            print(
                f"real server: {ready.get('rules')} rules, {ready.get('songs')} songs, "
                f"RANKING={ranking}"
            )
            answers = [post(f"{real.url}/api/recommend", body) for body in bodies[:200]]
            if any(status != HTTPStatus.OK for status, _ in answers):
                print("the real server refused a sample query", file=sys.stderr)
                return 1
            lengths = [len(json.loads(answer)["songs"]) for _, answer in answers]
            print(f"sample of 200 queries: {statistics.mean(lengths):.1f} songs per answer")
            response_path = work / "response.json"
            response_path.write_bytes(answers[0][1])
            songs_path = work / "songs.json"
            songs_path.write_bytes(json.dumps(json.loads(answers[0][1])["songs"]).encode())

            servers = {"recommend": (real.url, real.process.pid)}
            if args.access_log:
                assert logged.process is not None
                servers["logged"] = (logged.url, logged.process.pid)
            modes = {
                "bare": ("--bare-server", [str(response_path)]),
                "app-fixed": ("--app-server", [str(data_dir), str(songs_path)]),
                "app": ("--app-server", [str(data_dir), "-"]),
            }
            for name in names:
                if name in servers:
                    continue
                mode, arguments = modes[name]
                servers[name] = helpers.enter_context(helper_server(mode, arguments, server_cpu))
            for _ in range(args.rounds):
                for name in names:
                    url, pid = servers[name]
                    before = cpu_seconds(pid)
                    wrk = run_wrk(
                        f"{url}/api/recommend",
                        bodies,
                        work,
                        duration=args.duration,
                        connections=args.connections,
                        cpu=wrk_cpu,
                    )
                    results[name].append(Run(wrk, cpu_seconds(pid) - before))
            with urllib.request.urlopen(f"{real.url}/metrics", timeout=10) as response:
                exposition = response.read().decode()
        finally:
            status = real.stop()
            logged_status = logged.stop() if args.access_log else 0
    if status != 0:
        print(f"the real server exited with {status}:\n{real.log()}", file=sys.stderr)
        return 1
    if logged_status != 0:
        print(f"the logged server exited with {logged_status}:\n{logged.log()}", file=sys.stderr)
        return 1

    print(
        f"\nwrk {args.connections} connections, {args.duration:g} s per run, {args.rounds} "
        f"rounds, {args.queries} cycled 1-5-song bodies; servers on CPU {server_cpu}, "
        f"wrk on CPU {wrk_cpu}"
    )
    print(
        f"{'server':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>8} {'CPU µs/req':>11}"
    )
    for name, runs in results.items():
        for run in runs:
            print(run.row(name))
    pairs = list(zip(results["recommend"], results["bare"], strict=True))
    ratios = [r.wrk.rate / b.wrk.rate for r, b in pairs]
    cpu_ratios = [b.cpu_us_per_request / r.cpu_us_per_request for r, b in pairs]
    ratio = statistics.median(ratios)
    failures = sum(run.wrk.failures for runs in results.values() for run in runs)
    print(
        f"\nreq/s ratio recommend/bare: {ratio:.2f} (rounds: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; target ≥ {TARGET_RATIO}); failed: {failures}"
    )
    print(
        f"CPU-per-request ratio bare/recommend: {statistics.median(cpu_ratios):.2f} (rounds: "
        f"{', '.join(f'{r:.2f}' for r in cpu_ratios)})"
    )
    print(handler_time_histogram(exposition))
    if args.access_log:
        logged_pairs = zip(results["logged"], results["bare"], strict=True)
        logged_ratios = [lg.wrk.rate / b.wrk.rate for lg, b in logged_pairs]
        log_cpu = statistics.median(run.cpu_us_per_request for run in results["logged"])
        plain_cpu = statistics.median(run.cpu_us_per_request for run in results["recommend"])
        print(
            "access log (ACCESS_LOG=1): req/s ratio logged/bare "
            f"{statistics.median(logged_ratios):.2f} (rounds: "
            f"{', '.join(f'{r:.2f}' for r in logged_ratios)}); server CPU per request "
            f"{log_cpu:.1f} µs against {plain_cpu:.1f} µs without ({log_cpu - plain_cpu:+.1f} µs)"
        )
    if args.split:
        cpu = {
            name: statistics.median(run.cpu_us_per_request for run in runs)
            for name, runs in results.items()
        }
        print(
            f"CPU µs per request (medians): aiohttp endpoint {cpu['bare']:.1f}; "
            f"HTTP layer (body, validation, route wrapper, metrics, JSON) "
            f"{cpu['app-fixed'] - cpu['bare']:+.1f}; recommendation "
            f"{cpu['app'] - cpu['app-fixed']:+.1f}; actor system "
            f"{cpu['recommend'] - cpu['app']:+.1f}"
        )
    return 0 if ratio >= TARGET_RATIO and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
