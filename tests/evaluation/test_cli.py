"""``python -m evaluation`` as a real subprocess on a small dataset written by the test."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.processes import REPO, mining_env

THEMES = [[f"theme{t} song{s}" for s in range(6)] for t in range(8)]
FILLER = [f"filler {i}" for i in range(40)]


def write_playlists(path: Path, playlists: int = 90) -> Path:
    """Playlists that each take most of one theme plus a few filler songs, in random order."""
    rng = random.Random(5)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["pid", "name", "track_name"])
        for pid in range(playlists):
            songs = [s for s in THEMES[pid % len(THEMES)] if rng.random() < 0.85]
            songs += rng.sample(FILLER, 3)
            rng.shuffle(songs)
            writer.writerows([pid, f"list {pid}", song] for song in songs)
    return path


def evaluate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evaluation", *args],
        env=mining_env(Path("/nonexistent"), **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_playlists(tmp_path_factory.mktemp("evaluation") / "playlists.csv")


def without_costs(report: dict[str, object]) -> dict[str, object]:
    rows = [
        {k: v for k, v in row.items() if k not in ("mining_seconds", "peak_rss_bytes")}
        for row in report["rows"]  # type: ignore[attr-defined]
    ]
    return {**report, "rows": rows}


@pytest.mark.slow
def test_rules_beat_popularity_on_themed_playlists_and_the_run_is_deterministic(
    dataset: Path,
) -> None:
    args = [str(dataset), "--folds", "3", "--seed", "4", "--json"]
    env = {"MIN_SUPPORT": "0.05", "MIN_CONFIDENCE": "0.3", "MAX_LEN": "3"}
    first = evaluate(*args, **env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    rows = {row["method"]: row for row in report["rows"]}
    assert report["queries"] == 90
    assert set(rows) == {"popularity", "item kNN (cosine)", "rules, best", "rules, sum"}
    for ranking in ("best", "sum"):
        rules = rows[f"rules, {ranking}"]
        assert rules["fired"] > 0.9
        assert rules["hr"] > 2 * rows["popularity"]["hr"]
        assert rules["rules"] > 0 and rules["peak_rss_bytes"] > 0
    second = evaluate(*args, **env)
    assert without_costs(json.loads(second.stdout)) == without_costs(report)


def test_a_grid_mines_every_combination_and_prints_a_table(dataset: Path) -> None:
    result = evaluate(
        str(dataset),
        "--folds",
        "2",
        "--min-support",
        "0.05",
        "--min-support",
        "0.1",
        "--ranking",
        "sum",
        MIN_CONFIDENCE="0.3",
        MAX_LEN="2",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    table = [line for line in lines if line.startswith("| rules, sum")]
    assert len(table) == 2
    assert "support 0.05" in table[0] and "support 0.1" in table[1]
    assert any(line.startswith("| item kNN (cosine)") for line in lines)
    assert any("x kNN" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["--folds", "1"], {}, 2, "--folds must be >= 2"),
        (
            [],
            {"MAX_LEN": "one"},
            2,
            "MAX_LEN='one' must be a whole number from 2 to 2147483647 (a rule has two songs; "
            "past the longest playlist any value mines the same)",
        ),
        (["--min-confidence", "2"], {}, 2, "MIN_CONFIDENCE='2' must be a number from 0 to 1"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(
    dataset: Path, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    result = evaluate(str(dataset), *args, **env)
    assert result.returncode == code
    assert result.stderr.strip().splitlines() == [f"evaluation: error: {message}"]


def test_a_missing_dataset_is_one_line_and_exit_4_like_the_job(tmp_path: Path) -> None:
    result = evaluate(str(tmp_path / "nothing.csv"))
    assert result.returncode == 4
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not found" in result.stderr


def test_a_file_that_is_not_a_playlists_csv_is_one_line_and_exit_3(tmp_path: Path) -> None:
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    result = evaluate(str(tmp_path / "other.csv"))
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no 'pid' and no 'track_name' column" in result.stderr
