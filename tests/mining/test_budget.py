"""``python -m mining`` under MINING_MEMORY_LIMIT: refused early, stopped late, never past it.

Each job runs as a real subprocess under a small wrapper that reports the kernel's peak
resident set of the job's processes (``RUSAGE_CHILDREN``), measured from outside as
``/usr/bin/time`` would. The dataset explodes like the course sample: long playlists
sharing long runs of songs (tests/helpers/playlists.py).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mining.checkpoint import CHECKPOINT_FILENAME
from mining.memory import MIB
from mining.rulesfile import RULES_FILENAME, read_rules
from tests.helpers.playlists import shared_runs, write_playlists_csv
from tests.helpers.processes import REPO, mining_env

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

LIMIT_MIB = 512
# A 40-song run shared by two playlists: Σ C(40, k≤8) ≈ 10^8 itemsets at 2 playlists.
PLAYLISTS = shared_runs(pairs=25, run=40, noise=12)
N = len(PLAYLISTS)
TWO_PLAYLISTS = repr(2 / N)
# The course sample's must-show, scaled to this dataset: 2 playlists, confidence 0.1.
PARAMETERS = {
    "MIN_SUPPORT": TWO_PLAYLISTS,
    "MIN_CONFIDENCE": "0.1",
    "MINING_MEMORY_LIMIT": f"{LIMIT_MIB}MiB",
}
WRAPPER = textwrap.dedent(
    """
    import resource, subprocess, sys
    hide_pyfim = sys.argv[1] == "hide-pyfim"
    code = (
        "import sys; sys.modules['fim'] = None; "
        "from mining.__main__ import main; sys.exit(main())"
    )
    command = [sys.executable, "-c", code] if hide_pyfim else [sys.executable, "-m", "mining"]
    job = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(job.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(job.returncode, peak)
    """
)


def run_measured(
    data_dir: Path, hide_pyfim: bool = False, /, **env: str | Path
) -> tuple[int, str, int, float]:
    """Run the job; (exit code, stderr, peak RSS of its processes in bytes, seconds)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, "hide-pyfim" if hide_pyfim else "-"],
        env=mining_env(data_dir, **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    code, peak = map(int, result.stdout.split())
    return code, result.stderr, peak, time.monotonic() - started


def snapshot(data_dir: Path) -> dict[str, bytes]:
    return {name: (data_dir / name).read_bytes() for name in (RULES_FILENAME, CHECKPOINT_FILENAME)}


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], stderr
    assert "Traceback" not in stderr
    assert lines[-1].startswith("mining: error: ")
    return lines[-1]


@pytest.fixture(scope="module")
def mined(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The exploding dataset, and a DATA_DIR holding its rules at MAX_LEN 2 (each engine fits)."""
    root = tmp_path_factory.mktemp("budget")
    dataset = write_playlists_csv(root / "shared-runs.csv", PLAYLISTS)
    # pyfim's run last: its rules are the files the refused runs must leave untouched.
    for engine in ("mlxtend", "pyfim"):
        data_dir = root / f"data-{engine}"
        code, stderr, peak, _ = run_measured(
            data_dir, DATASET_URL=dataset, MAX_LEN="2", MINING_ENGINE=engine, **PARAMETERS
        )
        assert code == 0, stderr
        assert peak <= LIMIT_MIB * MIB, (engine, peak // MIB)
        assert read_rules(data_dir / RULES_FILENAME).header.rule_count > 25 * 40 * 39
    return dataset, data_dir


def explode(
    dataset: Path, data_dir: Path, engine: str, hide_pyfim: bool = False, **env: str
) -> tuple[str, int, float]:
    before = snapshot(data_dir)
    code, stderr, peak, seconds = run_measured(
        data_dir,
        hide_pyfim,
        DATASET_URL=dataset,
        MAX_LEN="8",
        MINING_ENGINE=engine,
        **PARAMETERS,
        **env,
    )
    assert code == 6, stderr
    assert snapshot(data_dir) == before
    assert not list(data_dir.glob("*.tmp-*"))
    # Never far past the limit, measured from outside (the brief's bound: 1.3 × the limit).
    assert peak <= 1.3 * LIMIT_MIB * MIB, peak // MIB
    return one_error_line(stderr), peak, seconds


@pytest.mark.parametrize("engine", ["pyfim", "mlxtend"])
@pytest.mark.slow
def test_parameters_that_cannot_fit_are_refused_before_mining(
    mined: tuple[Path, Path], engine: str
) -> None:
    line, _, seconds = explode(*mined, engine)
    assert line.startswith(
        f"mining: error: memory budget exceeded before mining: MIN_SUPPORT={TWO_PLAYLISTS} "
        f"(2 of {N} playlists) with MAX_LEN=8 gives more than"
    )
    assert "raise MIN_SUPPORT to 3 playlists" in line
    assert "lower MAX_LEN to" in line
    assert seconds < 60


@pytest.mark.slow  # a few seconds of mlxtend growing until it is stopped
def test_an_explosion_no_count_foresaw_is_stopped_at_the_limit(mined: tuple[Path, Path]) -> None:
    # Without pyfim only singletons and pairs are counted, and they are few: mlxtend starts.
    line, _, seconds = explode(
        *mined, "mlxtend", hide_pyfim=True, MINING_HEARTBEAT_SECONDS="0.5", LOG_LEVEL="INFO"
    )
    assert line.startswith(
        f"mining: error: memory budget exceeded: the job grew past {LIMIT_MIB} MiB "
        "(MINING_MEMORY_LIMIT) after "
    )
    assert f"while mining the itemsets in >= 2 of {N} playlists with <= 8 songs" in line
    assert line.endswith("raise MIN_SUPPORT or lower MAX_LEN (or raise MINING_MEMORY_LIMIT)")
    assert seconds < 120


def test_a_heartbeat_reports_long_phases(mined: tuple[Path, Path]) -> None:
    dataset, data_dir = mined
    code, stderr, _, _ = run_measured(
        data_dir.with_name("heartbeat"),
        True,
        DATASET_URL=dataset,
        MIN_SUPPORT=TWO_PLAYLISTS,
        MAX_LEN="2",
        MINING_ENGINE="mlxtend",
        MINING_HEARTBEAT_SECONDS="0.1",
    )
    assert code == 0, stderr
    beats = [line for line in stderr.splitlines() if "heartbeat: " in line]
    assert beats, stderr
    assert any(
        "heartbeat: mining the itemsets in >= 2 of" in line and "engine mlxtend" in line
        for line in beats
    )
    assert all(" of " in line and "MiB" in line for line in beats)


@pytest.mark.slow
def test_absurd_values_are_clamped_or_refused(mined: tuple[Path, Path], tmp_path: Path) -> None:
    dataset, _ = mined
    common = {"DATASET_URL": str(dataset), "MINING_MEMORY_LIMIT": f"{LIMIT_MIB}MiB"}
    # A support below one playlist means one playlist; with MAX_LEN 2 that fits.
    code, stderr, peak, _ = run_measured(
        tmp_path / "a", **common, MIN_SUPPORT="1e-9", MAX_LEN="2", MIN_CONFIDENCE="0.5"
    )
    assert code == 0, stderr
    assert f"MIN_SUPPORT=1e-09 is less than one of the {N} playlists: mining at 1 playlist" in (
        stderr
    )
    assert read_rules(tmp_path / "a" / RULES_FILENAME).header.min_count == 1
    # MAX_LEN past every playlist is clamped to the longest one.
    code, stderr, _, _ = run_measured(
        tmp_path / "b", **common, MIN_SUPPORT="3 playlists", MAX_LEN="100000"
    )
    assert code == 0, stderr
    assert "MAX_LEN=100000 is past the longest playlist" in stderr
    # ... and at 2 playlists it is refused, not left to grow.
    code, stderr, peak, _ = run_measured(
        tmp_path / "c", **common, MIN_SUPPORT="2 playlists", MAX_LEN="100000"
    )
    assert code == 6
    assert "memory budget exceeded before mining" in one_error_line(stderr)
    assert peak <= 1.3 * LIMIT_MIB * MIB
    for variable, value, text in [
        ("MAX_LEN", "1" + "0" * 12, "must be a whole number from 2 to 2147483647"),
        ("MIN_SUPPORT", "0 playlists", "(N >= 1)"),
        ("MIN_SUPPORT", "2", "'N playlists'"),
        ("MINING_MEMORY_LIMIT", "lots", "must be a size such as"),
        ("MINING_MEMORY_LIMIT", "1MiB", "must be a size of at least"),
        ("AUTO_SUPPORT_FLOOR", "0", "playlist count"),
        ("AUTO_MAX_RULES", "0", "must be a whole number from 1"),
        ("MINING_HEARTBEAT_SECONDS", "-1", "a number of seconds greater than 0"),
    ]:
        code, stderr, _, _ = run_measured(tmp_path / "d", **{**common, variable: value})
        assert code == 2, (variable, value, stderr)
        assert one_error_line(stderr).startswith(f"mining: error: {variable}="), stderr
        assert text in stderr
        assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_auto_mines_the_lowest_count_that_fits_and_a_rerun_skips(
    mined: tuple[Path, Path], tmp_path: Path
) -> None:
    dataset, _ = mined
    env = {
        "DATASET_URL": str(dataset),
        "MIN_SUPPORT": "auto",
        "MAX_LEN": "8",
        "AUTO_SUPPORT_FLOOR": "2 playlists",
        "MINING_MEMORY_LIMIT": f"{LIMIT_MIB}MiB",
    }
    code, stderr, peak, _ = run_measured(tmp_path / "data", **env)
    assert code == 0, stderr
    assert peak <= LIMIT_MIB * MIB
    assert f"support: auto is 3 playlists (floor 2 playlists) of {N}: " in stderr
    header = read_rules(tmp_path / "data" / RULES_FILENAME).header
    assert (header.parameters.min_support, header.min_count, header.parameters.auto_floor) == (
        "auto",
        3,
        2,
    )
    code, stderr, _, _ = run_measured(tmp_path / "data", **env)
    assert code == 0 and "up to date" in stderr, stderr
    code, stderr, _, _ = run_measured(tmp_path / "data", **{**env, "AUTO_SUPPORT_FLOOR": "3"})
    assert code == 0 and "parameters changed" in stderr, stderr
