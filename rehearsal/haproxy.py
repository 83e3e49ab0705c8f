"""HAProxy as the Service: the config rendered from the readinessProbe, the process, its states."""

from __future__ import annotations

import csv
import re
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from string import Template
from types import TracebackType

from rehearsal.deployment import ReadinessProbe

TEMPLATE = Path(__file__).with_name("haproxy.cfg.in")
BACKEND = "pods"
FRONTEND = "service"
LOOPBACK = "127.0.0.1"


class HaproxyError(RuntimeError):
    """HAProxy did not start, or did not reach the expected server states in time."""


@dataclass(frozen=True)
class Slot:
    """A backend server line: one pod's place in the Service, DOWN while nothing listens."""

    name: str
    port: int


@dataclass(frozen=True)
class HaproxyConfig:
    """What varies between scenarios."""

    bind_port: int
    slots: tuple[Slot, ...]
    stats_socket: Path
    readiness: ReadinessProbe


def render_config(config: HaproxyConfig, template: str | None = None) -> str:
    """The haproxy.cfg text for ``config``."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    probe = config.readiness
    servers = "\n".join(f"    server {slot.name} {LOOPBACK}:{slot.port}" for slot in config.slots)
    return Template(text).substitute(
        stats_socket=str(config.stats_socket),
        bind_address=LOOPBACK,
        bind_port=config.bind_port,
        probe_path=probe.path,
        inter=probe.period_seconds,
        fall=probe.failure_threshold,
        rise=probe.success_threshold,
        timeout_check=probe.timeout_seconds,
        servers=servers,
    )


def parse_stats(text: str) -> list[dict[str, str]]:
    """Rows of the runtime API's ``show stat`` CSV, keyed by its header names."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise HaproxyError(f"not a 'show stat' answer: {text[:80]!r}")
    reader = csv.DictReader([lines[0][2:], *lines[1:]])
    return [dict(row) for row in reader]


def is_up(status: str) -> bool:
    """Whether a server status takes traffic ("UP", or "UP 1/2" while failing checks)."""
    return status.split(" ", 1)[0] == "UP"


_LINE_TIME = r"^(?P<time>\S+) "
_STATE_LINE = re.compile(_LINE_TIME + r"Server [^/\s]+/(?P<slot>\S+) is (?P<state>UP|DOWN)\b")
_CHECK_LINE = re.compile(
    _LINE_TIME + r"Health check for server [^/\s]+/(?P<slot>\S+) (?P<result>succeeded|failed), "
    r"reason: (?P<reason>[^,]+),.* status: (?P<status>\d+/\d+ (?:UP|DOWN))\.$"
)
# option tcplog: client [accept date] frontend backend/server Tw/Tc/Tt bytes state ...
_CONNECTION_LINE = re.compile(
    _LINE_TIME + r"\S+ \[[^]]+\] \S+ [^/\s]+/(?P<slot>\S+) \S+ \d+ (?P<state>\S\S) "
)


@dataclass(frozen=True)
class LogEvent:
    """A pod's health as HAProxy logged it: a check result that changed it, or UP/DOWN."""

    time: datetime
    slot: str
    text: str
    # "UP" or "DOWN" when the pod entered or left the Service, None for a check result.
    state: str | None = None
    # For a check result: "succeeded" or "failed", and the health it left ("1/2 UP", "0/1 DOWN").
    check: str | None = None
    health: str | None = None


@dataclass(frozen=True)
class LogFacts:
    """What HAProxy's log says: health events, and connections by termination state."""

    events: tuple[LogEvent, ...]
    # (slot, two-letter termination state) -> connections; "--" is a normal end.
    terminations: Mapping[tuple[str, str], int]


def parse_log(lines: Iterable[str]) -> LogFacts:
    """Health events and connection endings from HAProxy's log (``log stdout format iso``)."""
    events = []
    terminations: Counter[tuple[str, str]] = Counter()
    for raw in lines:
        line = raw.rstrip("\n")
        if match := _CONNECTION_LINE.match(line):
            terminations[match["slot"], match["state"]] += 1
        elif match := _STATE_LINE.match(line):
            text = f"HAProxy: {match['slot']} is {match['state']}"
            moment = datetime.fromisoformat(match["time"])
            events.append(LogEvent(moment, match["slot"], text, match["state"]))
        elif match := _CHECK_LINE.match(line):
            text = (
                f"HAProxy: check of {match['slot']} {match['result']} "
                f"({match['reason']}), health {match['status']}"
            )
            moment = datetime.fromisoformat(match["time"])
            events.append(
                LogEvent(moment, match["slot"], text, check=match["result"], health=match["status"])
            )
    return LogFacts(tuple(events), dict(terminations))


class Haproxy:
    """One HAProxy process for one scenario, stopped on exit from the ``with`` block."""

    def __init__(self, config: HaproxyConfig, workdir: Path, executable: str = "haproxy") -> None:
        self.config = config
        self._config_path = workdir / "haproxy.cfg"
        self._log_path = workdir / "haproxy.log"
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Haproxy:
        self._config_path.write_text(render_config(self.config), encoding="utf-8")
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [self._executable, "-db", "-f", str(self._config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while not self.config.stats_socket.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise HaproxyError(f"HAProxy did not start; see {self._log_path}")
            time.sleep(0.05)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def command(self, line: str) -> str:
        """Send one runtime API command and return its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(str(self.config.stats_socket))
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> list[dict[str, str]]:
        """The current ``show stat`` rows."""
        return parse_stats(self.command("show stat"))

    def server_states(self) -> dict[str, str]:
        """Each slot's status ("UP", "DOWN", "UP 1/2", ...)."""
        return {
            row["svname"]: row["status"]
            for row in self.stats()
            if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_for(self, expected: Mapping[str, bool], timeout: float) -> None:
        """Wait until each named slot is up (True) or down (False); HaproxyError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.server_states()
            if all(is_up(states[slot]) == up for slot, up in expected.items()):
                return
            if time.monotonic() > deadline:
                raise HaproxyError(
                    f"after {timeout:g} s HAProxy sees {states}, expected "
                    + ", ".join(f"{s} {'UP' if up else 'DOWN'}" for s, up in expected.items())
                )
            time.sleep(0.05)

    def log(self) -> LogFacts:
        """What HAProxy has logged so far."""
        with self._log_path.open(encoding="utf-8", errors="replace") as lines:
            return parse_log(lines)

    def stop(self) -> None:
        """Stop HAProxy (SIGTERM, then SIGKILL after 5 s)."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
