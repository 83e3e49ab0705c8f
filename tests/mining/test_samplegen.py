"""The sample generator and the bundled sample it produced."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import shlex
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from mining import samplegen

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "mining" / "data"
SAMPLE = DATA / "sample_playlists.csv.gz"
PROVENANCE = DATA / "PROVENANCE.md"


def _decompressed_sha256(path: Path) -> str:
    with gzip.open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module")
def sample_rows() -> list[dict[str, str]]:
    header, rows = _read_rows(SAMPLE)
    assert tuple(header) == samplegen.HEADER
    return rows


def test_same_seed_gives_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    spec = samplegen.SampleSpec(seed=7, playlists=60)
    first, second, other = tmp_path / "a.csv.gz", tmp_path / "b.csv.gz", tmp_path / "c.csv.gz"
    samplegen.write_sample(spec, first)
    samplegen.write_sample(spec, second)
    samplegen.write_sample(samplegen.SampleSpec(seed=8, playlists=60), other)
    assert first.read_bytes() == second.read_bytes()
    assert _decompressed_sha256(first) != _decompressed_sha256(other)


def test_committed_sample_is_what_the_documented_command_writes(tmp_path: Path) -> None:
    provenance = PROVENANCE.read_text(encoding="utf-8")
    command = re.search(r"^\s+(python -m mining\.samplegen .*)$", provenance, re.MULTILINE)
    assert command is not None, "PROVENANCE.md must show the generator command"
    args = shlex.split(command.group(1))[1:]
    out = tmp_path / "regenerated.csv.gz"
    args[args.index("-o") + 1] = str(out)
    subprocess.run([sys.executable, *args], cwd=REPO, check=True, capture_output=True)

    committed = _decompressed_sha256(SAMPLE)
    assert _decompressed_sha256(out) == committed
    assert f"sha256 of the decompressed CSV | {committed}" in provenance


def test_names_with_commas_and_quotes_survive_a_csv_round_trip(
    sample_rows: list[dict[str, str]],
) -> None:
    catalogue = {(s.artist, s.track) for s in samplegen.load_songs()}
    pairs = {(row["artist_name"], row["track_name"]) for row in sample_rows}
    assert pairs <= catalogue
    assert any("," in track for _, track in pairs)
    assert any('"' in track for _, track in pairs)
    assert any("," in artist for artist, _ in pairs)
    assert any("," in row["album_name"] for row in sample_rows)
    assert all(None not in row and len(row) == len(samplegen.HEADER) for row in sample_rows)


def test_sample_has_the_documented_shape(sample_rows: list[dict[str, str]]) -> None:
    playlists: dict[int, set[str]] = defaultdict(set)
    rows_per_playlist: Counter[int] = Counter()
    for row in sample_rows:
        pid = int(row["pid"])
        playlists[pid].add(row["track_name"])
        rows_per_playlist[pid] += 1
    lengths = list(rows_per_playlist.values())
    popularity = Counter(name for names in playlists.values() for name in names)
    n = len(playlists)

    assert SAMPLE.stat().st_size <= 1_000_000
    assert 14_000 <= len(sample_rows) <= 18_000
    assert sorted(playlists) == list(range(900))
    assert min(lengths) >= 5 and max(lengths) <= 80
    assert 15 <= statistics.mean(lengths) <= 21
    assert 3_300 <= len(popularity) <= 3_900
    assert 0.10 <= popularity.most_common(1)[0][1] / n <= 0.30
    assert 180 <= sum(count / n >= 0.025 for count in popularity.values()) <= 260
    # Each song keeps one URI everywhere, as a real Spotify export does.
    uris: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in sample_rows:
        uris[(row["artist_name"], row["track_name"])].add(row["track_uri"])
    assert all(len(found) == 1 for found in uris.values())
    # Several artists share some track names; mining merges them, like the real files.
    by_name = Counter(track for _, track in uris)
    assert any(count > 1 for count in by_name.values())


def test_playlists_hold_distinct_songs_within_bounds() -> None:
    spec = samplegen.SampleSpec(seed=3, playlists=200, min_tracks=10, max_tracks=25)
    songs = samplegen.load_songs()
    playlists = list(samplegen.generate_playlists(spec, songs))
    assert len(playlists) == 200
    assert all(10 <= len(p) <= 25 and len(set(p)) == len(p) for p in playlists)


def test_plain_csv_output_is_written_when_the_name_has_no_gz(tmp_path: Path) -> None:
    out = tmp_path / "small.csv"
    rows = samplegen.write_sample(samplegen.SampleSpec(playlists=5), out)
    text = out.read_text(encoding="utf-8")
    assert text.startswith(",".join(samplegen.HEADER) + "\n")
    assert len(list(csv.reader(io.StringIO(text)))) == rows + 1


def test_cli_rejects_a_bad_knob_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "never.csv.gz"
    result = subprocess.run(
        [sys.executable, "-m", "mining.samplegen", "--playlists", "0", "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["samplegen: playlists must be >= 1"]
    assert not out.exists()


def _generator_peak_rss(out: Path, playlists: int) -> int:
    """Peak RSS of ``python -m mining.samplegen`` in a process of its own, in bytes."""
    code = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    command = [sys.executable, "-m", "mining.samplegen", "--playlists", str(playlists)]
    result = subprocess.run(
        [sys.executable, "-c", code, *command, "--seed", "5", "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


@pytest.mark.slow  # ~10 s: two real runs of the generator
def test_large_outputs_are_streamed_in_constant_memory(tmp_path: Path) -> None:
    small = _generator_peak_rss(tmp_path / "small.csv.gz", 2_000)
    large = _generator_peak_rss(tmp_path / "large.csv.gz", 16_000)
    # Eight times the playlists, measured side by side: the same memory within a few MiB.
    assert large - small < 8 << 20, (small >> 20, large >> 20)
    with gzip.open(tmp_path / "large.csv.gz", "rt", encoding="utf-8") as f:
        pids = {row["pid"] for row in csv.DictReader(f)}
    assert len(pids) == 16_000
    assert not list(tmp_path.glob("*.partial"))
