"""`make run`'s script: mines the bundled sample, serves it and shows a real recommendation;
Ctrl-C stops it at once with status 0."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from mining.rulesfile import RULES_FILENAME, read_rules
from recommender.engine import DEFAULT_RANKING, Recommender
from tests.helpers.processes import REPO, free_port

SERVING = b"(Ctrl-C to stop)."
# Far longer than any stop should take: a Ctrl-C that waited for the drain would show.
DRAIN_SECONDS = 30


def demo_env(data_dir: Path, **env: str) -> dict[str, str]:
    return dict(os.environ, PY=sys.executable, DATA_DIR=str(data_dir), PORT=str(free_port()), **env)


@pytest.mark.slow
def test_the_demo_mines_serves_and_answers_the_songs_of_the_commonest_rule(tmp_path: Path) -> None:
    data_dir = tmp_path / "ml-data"
    # DEMO_EXIT stops the server after the request; the drain must not delay it either.
    env = demo_env(data_dir, DEMO_EXIT="1", DRAIN_SECONDS=str(DRAIN_SECONDS))
    started = time.monotonic()
    result = subprocess.run(
        [str(REPO / "scripts" / "run-demo")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < DRAIN_SECONDS
    lines = result.stdout.splitlines()
    start = lines.index("Song recommendations:")
    assert lines[start - 1].startswith("Recommendation server v")
    shown = [line.strip() for line in lines[start + 1 :] if line.startswith("    ")]
    assert len(shown) == 10
    rules = read_rules(data_dir / RULES_FILENAME)
    antecedent, consequent, _, _ = max(rules.iter_rules(), key=lambda r: (r[2], r[2] / r[3], r))
    query = [*antecedent, consequent]
    assert f"python -m client 127.0.0.1 {env['PORT']} " in result.stdout
    # The server's own answer for the songs of the rule seen in the most playlists.
    assert shown == Recommender.from_ruleset(rules, ranking=DEFAULT_RANKING).recommend(query)
    assert not set(query) & set(shown)
    assert "exiting with status 0" in result.stderr


def _take_terminal() -> None:
    # Runs in the child after setsid(): its standard input, the pty, becomes the controlling
    # terminal, so the line discipline turns a typed ^C into SIGINT for its process group.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A command on a pseudo-terminal of its own, as a user runs it in a shell."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_terminal,  # noqa: PLW1509 (no threads start before the exec)
        )
        os.close(slave)
        self.output = b""

    def read_until(self, text: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, self.output.decode(errors="replace")
            assert self.read(0.1), self.output.decode(errors="replace")

    def read(self, seconds: float) -> bool:
        """Collect output for up to ``seconds``; False once the terminal is closed."""
        if select.select([self.master], [], [], seconds)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                return False
            self.output += chunk
            return bool(chunk)
        return True

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.read(0.05) and self.process.poll() is None:
            assert time.monotonic() < deadline, self.output.decode(errors="replace")
        return self.process.wait(timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.master)


@pytest.mark.parametrize(
    "interrupt",
    ["ctrl-c at the terminal", "sigint to the script alone", "sigterm to the script alone"],
)
@pytest.mark.slow
def test_an_interrupt_stops_the_demo_at_once_with_status_0(tmp_path: Path, interrupt: str) -> None:
    env = demo_env(tmp_path / "ml-data", DRAIN_SECONDS=str(DRAIN_SECONDS))
    terminal = Terminal([str(REPO / "scripts" / "run-demo")], env)
    try:
        terminal.read_until(SERVING, 120)
        sent = time.monotonic()
        if interrupt == "ctrl-c at the terminal":
            os.write(terminal.master, b"\x03")
        else:
            sig = signal.SIGINT if "sigint" in interrupt else signal.SIGTERM
            terminal.process.send_signal(sig)
        code = terminal.wait(DRAIN_SECONDS + 30)
        stopped_after = time.monotonic() - sent
    finally:
        terminal.close()
    output = terminal.output.decode(errors="replace")
    assert code == 0, output
    assert "exiting with status 0" in output
    # The server stops without a drain, whichever signal the script got.
    assert stopped_after < DRAIN_SECONDS / 3, output
    assert "Traceback" not in output


@pytest.mark.slow
def test_ctrl_c_on_make_run_reports_no_error(tmp_path: Path) -> None:
    env = demo_env(tmp_path / "ml-data", DRAIN_SECONDS=str(DRAIN_SECONDS))
    # -o: the virtualenv counts as made (the test runs inside it), whatever its timestamps.
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", "run"]
    command += [f"PORT={env['PORT']}", f"DATA_DIR={env['DATA_DIR']}"]
    terminal = Terminal(command, env)
    try:
        terminal.read_until(SERVING, 120)
        sent = time.monotonic()
        os.write(terminal.master, b"\x03")
        code = terminal.wait(DRAIN_SECONDS + 30)
        stopped_after = time.monotonic() - sent
    finally:
        terminal.close()
    output = terminal.output.decode(errors="replace")
    assert "exiting with status 0" in output
    # make passes the interrupt on, as it does for every Ctrl-C (it ends by its own SIGINT),
    # but the recipe exited 0: no "make: *** [run] Error 1" or "Interrupt" line.
    assert code == -signal.SIGINT
    assert "make: ***" not in output, output
    assert stopped_after < DRAIN_SECONDS / 3, output
