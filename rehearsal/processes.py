"""The real processes a scenario drives: server pods, the mining job, the continuous client."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rehearsal.haproxy import LOOPBACK

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a server needs to run from a copied source tree.
SERVER_PACKAGES = ("actors", "http_api", "mining", "recommender")
_VERSION_LINE = re.compile(r'^__version__ = "[^"]*"$', re.MULTILINE)


class RehearsalError(RuntimeError):
    """A process did not do what the scenario needs (start, get ready, exit in time)."""


def now() -> datetime:
    """The wall clock in UTC: the timeline the client's CSV uses too."""
    return datetime.now(UTC)


def bump_version_source(text: str, version: str) -> str:
    """``mining/version.py`` with ``__version__`` set to ``version``."""
    bumped, count = _VERSION_LINE.subn(f'__version__ = "{version}"', text)
    if count != 1:
        raise RehearsalError(f"expected one __version__ line in version.py, found {count}")
    return bumped


def copy_source_tree(destination: Path, version: str) -> Path:
    """Copy the server's packages to ``destination`` with the package version set to ``version``."""
    for package in SERVER_PACKAGES:
        shutil.copytree(
            REPO_ROOT / package,
            destination / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    version_file = destination / "mining" / "version.py"
    version_file.write_text(
        bump_version_source(version_file.read_text(encoding="utf-8"), version), encoding="utf-8"
    )
    return destination


def python_env(source_root: Path, overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child Python that imports our packages from ``source_root``."""
    env = dict(os.environ)
    # Ahead of the editable install, so a copied tree (another version) is what runs.
    env["PYTHONPATH"] = str(source_root)
    env.update(overrides)
    return env


def get_readyz(port: int, timeout: float = 1.0) -> tuple[int, str | None]:
    """``GET /readyz`` on a pod directly: the status and the model_date it reports, if any."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        model_date = json.loads(body).get("model_date")
    except (ValueError, AttributeError):
        model_date = None
    return response.status, model_date if isinstance(model_date, str) else None


@dataclass
class Pod:
    """One ``python -m http_api`` process listening on its slot's port."""

    name: str
    port: int
    label: str
    process: subprocess.Popen[bytes]
    started_at: datetime
    terminated_at: datetime | None = None
    exited_at: datetime | None = None

    @classmethod
    def start(
        cls,
        name: str,
        port: int,
        *,
        label: str,
        source_root: Path,
        data_dir: Path,
        env: Mapping[str, str],
        log_dir: Path,
    ) -> Pod:
        """Start a server for slot ``name`` with the Deployment's ``env`` on top."""
        overrides = {
            **env,
            "HOST": LOOPBACK,
            "PORT": str(port),
            "DATA_DIR": str(data_dir),
        }
        with (log_dir / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "http_api"],
                cwd=source_root,
                env=python_env(source_root, overrides),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return cls(name, port, label, process, now())

    def wait_ready(self, timeout: float) -> None:
        """Poll ``/readyz`` directly until it answers 200 (before HAProxy is involved)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RehearsalError(f"{self.name} exited with {self.process.returncode}")
            try:
                status, _ = get_readyz(self.port)
            except OSError:
                status = 0
            if status == http.client.OK:
                return
            time.sleep(0.05)
        raise RehearsalError(f"{self.name} was not ready within {timeout:g} s")

    def terminate(self) -> None:
        """SIGTERM, as the kubelet sends when the pod is deleted."""
        self.terminated_at = now()
        self.process.send_signal(signal.SIGTERM)

    def wait_exit(self, grace_seconds: float) -> int:
        """Wait for the exit; after the grace period SIGKILL (as the kubelet) and raise."""
        try:
            code = self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RehearsalError(
                f"{self.name} did not exit within the {grace_seconds:g} s grace period: killed"
            ) from None
        self.exited_at = now()
        return code

    def stop_quickly(self) -> None:
        """End a pod after the measurement: a second SIGTERM cuts its drain short."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_mining(
    data_dir: Path, dataset: Path, log_path: Path, env: Mapping[str, str], timeout: float
) -> None:
    """``python -m mining`` into ``data_dir``; RehearsalError unless it exits 0 in time."""
    overrides = {**env, "DATA_DIR": str(data_dir), "DATASET_URL": str(dataset)}
    with log_path.open("wb") as log:
        try:
            code = subprocess.run(
                [sys.executable, "-m", "mining"],
                cwd=REPO_ROOT,
                env=python_env(REPO_ROOT, overrides),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            raise RehearsalError(f"mining took longer than {timeout:g} s; see {log_path}") from None
    if code != 0:
        raise RehearsalError(f"mining exited with {code}; see {log_path}")


class ContinuousClient:
    """``python -m client --continuous`` through the Service, stopped by SIGTERM."""

    def __init__(
        self,
        port: int,
        songs: Sequence[str],
        *,
        interval: float,
        max_seconds: float,
        csv_path: Path,
        log_path: Path,
    ) -> None:
        self.csv_path = csv_path
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "client",
                    "--continuous",
                    LOOPBACK,
                    str(port),
                    *songs,
                    "--interval",
                    f"{interval:g}",
                    # An upper bound only: the scenario stops the client when it is done.
                    "--duration",
                    f"{max_seconds:g}",
                    "--output",
                    str(csv_path),
                ],
                cwd=REPO_ROOT,
                env=python_env(REPO_ROOT, {}),
                stdout=subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )

    def wait_for_rows(self, rows: int, timeout: float) -> None:
        """Wait until the CSV has ``rows`` data rows: the client is measuring."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RehearsalError(f"the client exited early with {self._process.returncode}")
            if self.csv_path.exists():
                with self.csv_path.open("rb") as f:
                    if sum(1 for _ in f) > rows:
                        return
            time.sleep(0.05)
        raise RehearsalError(f"the client wrote fewer than {rows} rows in {timeout:g} s")

    def stop(self) -> None:
        """SIGTERM: the client finishes its row and prints its summary."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        try:
            code = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise RehearsalError("the client did not stop within 10 s of SIGTERM") from None
        if code != 0:
            raise RehearsalError(f"the client exited with {code}")


@dataclass
class ModelDateWatch:
    """Polls each pod's ``/readyz`` directly and records when its model_date first changed."""

    ports: Mapping[str, int]
    interval: float = 0.02
    initial: dict[str, str | None] = field(default_factory=dict)
    switched: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Read each pod's current model_date, then poll in a thread."""
        for name, port in self.ports.items():
            self.initial[name] = get_readyz(port)[1]
        self._thread = threading.Thread(target=self._poll, name="model-date-watch", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            for name, port in self.ports.items():
                if name in self.switched:
                    continue
                try:
                    _, model_date = get_readyz(port)
                except OSError:
                    continue
                if model_date is not None and model_date != self.initial[name]:
                    self.switched[name] = (now(), model_date)

    def wait_all(self, timeout: float) -> None:
        """Wait until every pod switched; RehearsalError naming the others on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.switched) < len(self.ports):
            if time.monotonic() > deadline:
                missing = sorted(set(self.ports) - set(self.switched))
                raise RehearsalError(f"no new model_date within {timeout:g} s on {missing}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
