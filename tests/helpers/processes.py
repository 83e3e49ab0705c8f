"""The project's command-line programs as real subprocesses, free ports, and polling.

``run_mining`` and ``mine`` run ``python -m mining`` from the checkout into a DATA_DIR, in the
environment ``mining_env`` builds; ``stop`` (``terminate`` outside an event loop) ends a server
the way Kubernetes does (SIGTERM, then SIGKILL after a grace period); ``wait_until`` polls a
plain or async condition within a bounded time; ``capped`` bounds the memory a child that may
grow can take (prlimit); ``run_python`` runs a snippet in such a child, with a timeout;
``http_api_servers`` starts fresh ``python -m http_api`` processes, one per DATA_DIR, for
synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from mining.checkpoint import CHECKPOINT_FILENAME, read_checkpoint

REPO = Path(__file__).resolve().parents[2]
# Inherited from a developer's shell they would change what the bundled sample mines to.
MINING_VARIABLES = (
    "DATASET_URL",
    "MIN_SUPPORT",
    "MIN_CONFIDENCE",
    "MAX_LEN",
    "MINING_ENGINE",
    "SPARK_MASTER",
    "SPARK_CONF",
)


# Address space for a child that may grow without bound (a test of a bug it must not have):
# far above what a real job or server needs, far below the machine's memory.
CHILD_ADDRESS_SPACE = 4 * 1024**3


def capped(*argv: str, address_space: int = CHILD_ADDRESS_SPACE) -> list[str]:
    """``argv`` run under an address-space limit (RLIMIT_AS, set by util-linux's prlimit)."""
    return ["prlimit", f"--as={address_space}", *argv]


def run_python(
    code: str, timeout: float = 30, address_space: int = CHILD_ADDRESS_SPACE
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` from the checkout under a memory cap; fail the test on a timeout
    (the child is killed)."""
    try:
        return subprocess.run(
            capped(sys.executable, "-c", code, address_space=address_space),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s (blocked?): {code}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mining_env(data_dir: Path, **env: str | Path) -> dict[str, str]:
    """The environment of a mining job writing to ``data_dir``: default parameters and the
    bundled sample unless ``env`` sets them (``env`` may also replace DATA_DIR)."""
    full_env = {k: v for k, v in os.environ.items() if k not in MINING_VARIABLES}
    full_env["DATA_DIR"] = str(data_dir)
    full_env.update({k: str(v) for k, v in env.items()})
    return full_env


def run_mining(data_dir: Path, *args: str, **env: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m mining ARGS`` in ``mining_env``, ``capped``; the finished process, whatever
    its status."""
    return run_mining_bounded(data_dir, env, *args)


def run_mining_bounded(
    data_dir: Path,
    env: Mapping[str, str | Path],
    *args: str,
    timeout: float = 120,
    address_space: int = CHILD_ADDRESS_SPACE,
) -> subprocess.CompletedProcess[str]:
    """``run_mining`` with its own time and address-space bounds (a JVM reserves far more
    address space than it uses)."""
    return subprocess.run(
        capped(sys.executable, "-m", "mining", *args, address_space=address_space),
        env=mining_env(data_dir, **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def mine(data_dir: Path, **env: str) -> str:
    """Run the mining job into ``data_dir`` (the bundled sample unless ``env`` names another
    dataset), failing the test with its stderr unless it succeeds; the new model_date."""
    result = run_mining(data_dir, **env)
    assert result.returncode == 0, result.stderr
    return read_checkpoint(data_dir / CHECKPOINT_FILENAME).model_date


async def stop(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM ``process`` if it still runs; SIGKILL it if it has not exited after ``grace`` s."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM ``process`` if it still runs; SIGKILL it if it has not exited after ``grace`` s
    (the blocking twin of :func:`stop`)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def wait_until(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    interval: float = 0.01,
) -> float:
    """Poll a plain or async ``condition`` every ``interval`` s until it is true; the wall-clock
    time it was seen true. Fails the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.time()
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


@contextlib.contextmanager
def http_api_servers(data_dirs: Sequence[Path], **env: str) -> Iterator[list[str]]:
    """Start ``python -m http_api`` (``capped``) on a free port for each DATA_DIR, all at once;
    yield their base URLs in the same order; SIGTERM (then SIGKILL) them all on the way out."""
    base_env = {**os.environ, "HOST": "127.0.0.1", "PORT": "0", "DRAIN_SECONDS": "0", **env}
    servers = [
        subprocess.Popen(
            capped(sys.executable, "-m", "http_api"),
            env={**base_env, "DATA_DIR": str(data_dir)},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for data_dir in data_dirs
    ]
    try:
        urls = []
        for server in servers:
            assert server.stderr is not None
            for line in server.stderr:
                if match := _LISTENING.search(line):
                    urls.append(match.group(1))
                    break
            else:
                pytest.fail(f"python -m http_api exited with {server.wait()} before listening")
        yield urls
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            if server.stderr is not None:
                server.stderr.close()


def served_model_date(url: str, timeout: float) -> str | None:
    """The model_date a server at ``url`` answers with once ready; None if it is not ready
    within ``timeout`` s (it has nothing to serve)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                ready = response.status == 200
        except (urllib.error.URLError, OSError):
            ready = False
        if ready:
            request = urllib.request.Request(
                f"{url}/api/recommend",
                data=json.dumps({"songs": ["any song"]}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                model_date: str = json.load(response)["model_date"]
                return model_date
        time.sleep(0.05)
    return None
