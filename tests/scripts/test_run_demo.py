"""`make run`'s script: mines the bundled sample, serves it and shows a real recommendation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mining.rulesfile import RULES_FILENAME, read_rules
from tests.helpers.processes import REPO, free_port


def test_the_demo_mines_serves_and_answers_from_the_strongest_rule(tmp_path: Path) -> None:
    data_dir = tmp_path / "ml-data"
    env = dict(
        os.environ,
        PY=sys.executable,
        DATA_DIR=str(data_dir),
        PORT=str(free_port()),
        DEMO_EXIT="1",
        DRAIN_SECONDS="0",
    )
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
    lines = result.stdout.splitlines()
    start = lines.index("Song recommendations:")
    assert lines[start - 1].startswith("Recommendation server v")
    shown = [line.strip() for line in lines[start + 1 :] if line.startswith("    ")]
    assert len(shown) == 10
    rules = read_rules(data_dir / RULES_FILENAME)
    antecedent, consequent, _, _ = max(rules.iter_rules(), key=lambda r: (r[2] / r[3], r[2]))
    assert consequent in shown
    assert not set(antecedent) & set(shown)
    assert "exiting with status 0" in result.stderr
