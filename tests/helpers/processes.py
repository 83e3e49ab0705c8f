"""The project's command-line programs as real subprocesses, free ports, and polling.

``run_mining`` and ``mine`` run ``python -m mining`` from the checkout into a DATA_DIR, in the
environment ``mining_env`` builds; ``stop`` (``terminate`` outside an event loop) ends a server
the way Kubernetes does (SIGTERM, then SIGKILL after a grace period); ``wait_until`` polls a
plain or async condition within a bounded time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mining.checkpoint import CHECKPOINT_FILENAME, read_checkpoint

REPO = Path(__file__).resolve().parents[2]
# Inherited from a developer's shell they would change what the bundled sample mines to.
MINING_VARIABLES = ("DATASET_URL", "MIN_SUPPORT", "MIN_CONFIDENCE", "MAX_LEN", "MINING_ENGINE")


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
    """``python -m mining ARGS`` in ``mining_env``; the finished process, whatever its status."""
    return subprocess.run(
        [sys.executable, "-m", "mining", *args],
        env=mining_env(data_dir, **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
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
