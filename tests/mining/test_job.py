"""The job: a consistent rules + checkpoint pair, skipped when up to date, mined again otherwise."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, read_checkpoint, write_checkpoint
from mining.datadir import generation_filename, generation_files
from mining.engines import mine_itemsets
from mining.errors import MiningInputError
from mining.job import LOCK_FILENAME, run_job
from mining.reader import read_playlists
from mining.rules import derive_rules, min_count
from mining.rulesfile import RULES_FILENAME, read_rules
from mining.settings import Settings
from mining.version import __version__
from tests.helpers.processes import REPO, mining_env, run_mining


def write_playlists(path: Path, seed: int = 1, playlists: int = 300) -> Path:
    """A small CSV in the real files' shape with themes of songs that are listened to together."""
    rng = random.Random(seed)
    songs = [f"Song {i}, part {i % 3}" for i in range(40)]
    themes = [songs[i : i + 5] for i in range(0, 40, 5)]
    lines = ["track_uri,album_name,album_uri,artist_name,artist_uri,duration_ms,pid,track_name"]
    for pid in range(playlists):
        chosen = {s for theme in rng.sample(themes, 2) for s in theme if rng.random() < 0.8}
        chosen |= set(rng.sample(songs, 3))
        for song in sorted(chosen):
            quoted = '"' + song.replace('"', '""') + '"'
            lines.append(f"u,album,a,artist,r,1000,{pid},{quoted}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_playlists(tmp_path / "playlists.csv")


@pytest.fixture
def settings(tmp_path: Path, dataset: Path) -> Settings:
    return Settings(
        dataset_url=str(dataset),
        data_dir=tmp_path / "data",
        min_support=0.1,
        min_confidence=0.6,
        max_len=4,
        engine="pyfim",
    )


def snapshot(data_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        name: ((data_dir / name).read_bytes(), (data_dir / name).stat().st_mtime_ns)
        for name in (RULES_FILENAME, CHECKPOINT_FILENAME)
    }


def test_first_run_writes_a_consistent_pair_of_exact_rules(
    settings: Settings, dataset: Path
) -> None:
    outcome = run_job(settings)
    assert not outcome.skipped
    checkpoint = read_checkpoint(settings.data_dir / CHECKPOINT_FILENAME)
    ruleset = read_rules(settings.data_dir / RULES_FILENAME)
    header = ruleset.header
    assert checkpoint == Checkpoint(__version__, dataset.resolve().as_uri(), outcome.generated_ns)
    assert (header.generated_ns, header.dataset_url) == (
        checkpoint.generated_ns,
        checkpoint.dataset_url,
    )
    assert header.parameters == settings.parameters
    assert (header.engine, header.package_version, header.transactions) == (
        "pyfim",
        __version__,
        300,
    )
    assert header.rule_count == outcome.rules > 0
    # The same rules, computed here step by step.
    tx = read_playlists(dataset).transactions
    itemsets = mine_itemsets(tx, min_count(0.1, tx.playlists), 4, "mlxtend")
    expected = {
        (tuple(tx.song_names[i] for i in a), tx.song_names[c], n, na)
        for a, c, n, na in derive_rules(itemsets, 0.6)
    }
    assert {(tuple(sorted(a)), c, n, na) for a, c, n, na in ruleset.iter_rules()} == {
        (tuple(sorted(a)), c, n, na) for a, c, n, na in expected
    }
    assert dict(zip(ruleset.song_names, ruleset.song_counts.tolist(), strict=True)) == dict(
        zip(tx.song_names, tx.song_counts.tolist(), strict=True)
    )
    generation = generation_filename(outcome.generated_ns)
    assert sorted(p.name for p in settings.data_dir.iterdir()) == sorted(
        [RULES_FILENAME, generation, CHECKPOINT_FILENAME, LOCK_FILENAME]
    )
    # rules.cbor is the committed generation under its usual name, not a second copy.
    assert (settings.data_dir / RULES_FILENAME).samefile(settings.data_dir / generation)


def test_second_run_is_skipped_and_touches_nothing(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    first = run_job(settings)
    before = snapshot(settings.data_dir)
    with caplog.at_level(logging.INFO, logger="mining"):
        second = run_job(settings)
    assert second.skipped
    assert (second.rules, second.generated_ns) == (first.rules, first.generated_ns)
    assert snapshot(settings.data_dir) == before
    assert "up to date" in caplog.text


def test_another_engine_gives_the_same_rules_so_it_does_not_mine_again(
    settings: Settings,
) -> None:
    run_job(settings)
    assert run_job(replace(settings, engine="mlxtend")).skipped


def _other_url(settings: Settings) -> Settings:
    moved = Path(settings.dataset_url).with_name("moved.csv")
    shutil.copy(settings.dataset_url, moved)
    return replace(settings, dataset_url=moved.as_uri())


def _rewrite_checkpoint(settings: Settings, **changes: object) -> Settings:
    path = settings.data_dir / CHECKPOINT_FILENAME
    write_checkpoint(path, replace(read_checkpoint(path), **changes))  # type: ignore[arg-type]
    return settings


def _truncate_rules(settings: Settings) -> Settings:
    path = settings.data_dir / RULES_FILENAME
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return settings


def _remove(name: str) -> Callable[[Settings], Settings]:
    def remove(settings: Settings) -> Settings:
        (settings.data_dir / name).unlink()
        return settings

    return remove


def _remove_rules(settings: Settings) -> Settings:
    for path in [settings.data_dir / RULES_FILENAME, *generation_files(settings.data_dir)]:
        path.unlink()
    return settings


CHANGES: dict[str, tuple[Callable[[Settings], Settings], str]] = {
    "url changed": (_other_url, "dataset URL changed"),
    "support changed": (lambda s: replace(s, min_support=0.05), "parameters changed"),
    "confidence changed": (lambda s: replace(s, min_confidence=0.7), "parameters changed"),
    "max length changed": (lambda s: replace(s, max_len=3), "parameters changed"),
    # 30 of the 300 playlists is the count 0.1 resolved to: the request changed all the same.
    "support form changed": (
        lambda s: replace(s, min_support="30 playlists"),
        "parameters changed",
    ),
    "auto": (lambda s: replace(s, min_support="auto"), "parameters changed"),
    "rules missing": (_remove_rules, "rules file unusable"),
    "rules corrupt": (_truncate_rules, "rules file unusable"),
    "checkpoint missing": (_remove(CHECKPOINT_FILENAME), "no usable checkpoint"),
    "version changed": (
        lambda s: _rewrite_checkpoint(s, version="0.0.1"),
        "checkpoint is from version 0.0.1",
    ),
    "pair mismatch": (
        lambda s: _rewrite_checkpoint(s, generated_ns=1),
        "does not match the checkpoint",
    ),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_mines_again_when(
    settings: Settings,
    change: tuple[Callable[[Settings], Settings], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = run_job(settings)
    apply, reason = change
    changed = apply(settings)
    with caplog.at_level(logging.INFO, logger="mining"):
        again = run_job(changed)
    assert not again.skipped
    assert again.generated_ns > first.generated_ns
    assert reason in caplog.text
    checkpoint = read_checkpoint(changed.data_dir / CHECKPOINT_FILENAME)
    header = read_rules(changed.data_dir / RULES_FILENAME).header
    assert checkpoint.generated_ns == header.generated_ns == again.generated_ns
    assert header.parameters == changed.parameters
    assert generation_files(changed.data_dir) == [
        changed.data_dir / generation_filename(again.generated_ns)
    ]
    assert run_job(changed).skipped


def test_a_failed_run_leaves_the_previous_pair_untouched(
    settings: Settings, tmp_path: Path
) -> None:
    run_job(settings)
    before = snapshot(settings.data_dir)
    broken = tmp_path / "broken.csv"
    broken.write_text("pid,artist_name\n1,x\n")
    with pytest.raises(MiningInputError):
        run_job(replace(settings, dataset_url=str(broken)))
    assert snapshot(settings.data_dir) == before


def test_temporary_files_of_killed_runs_are_removed(settings: Settings) -> None:
    settings.data_dir.mkdir()
    for name in (
        f"{RULES_FILENAME}.tmp-0a1b2c3d4e5f",
        f"{CHECKPOINT_FILENAME}.tmp-abcdef012345",
        f"{generation_filename(12345)}.tmp-00ff00ff00ff",
    ):
        (settings.data_dir / name).write_bytes(b"half")
    run_job(settings)
    assert not list(settings.data_dir.glob("*.tmp-*"))


def publish_by_hand(data_dir: Path, generation: Path) -> None:
    """Make rules.cbor a hard link to ``generation``, as step 3 of a commit does."""
    staged = data_dir / f"{RULES_FILENAME}.tmp-by-hand"
    os.link(generation, staged)
    os.replace(staged, data_dir / RULES_FILENAME)


def test_a_commit_killed_after_the_checkpoint_is_finished_by_the_next_run_without_mining(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    first = run_job(settings)
    old = settings.data_dir / generation_filename(first.generated_ns)
    old_bytes = old.read_bytes()
    second = run_job(replace(settings, min_support=0.05))
    # As a kill after the checkpoint's rename leaves it: rules.cbor and the old generation.
    old.write_bytes(old_bytes)
    publish_by_hand(settings.data_dir, old)

    with caplog.at_level(logging.INFO, logger="mining"):
        again = run_job(replace(settings, min_support=0.05))
    assert again.skipped and again.generated_ns == second.generated_ns
    assert "finished the commit of an interrupted run" in caplog.text
    new = settings.data_dir / generation_filename(second.generated_ns)
    assert (settings.data_dir / RULES_FILENAME).samefile(new)
    assert generation_files(settings.data_dir) == [new]


def test_a_generation_left_uncommitted_by_a_kill_is_removed(settings: Settings) -> None:
    first = run_job(settings)
    orphan = settings.data_dir / generation_filename(first.generated_ns + 1)
    shutil.copy(settings.data_dir / RULES_FILENAME, orphan)
    assert run_job(settings).skipped
    assert generation_files(settings.data_dir) == [
        settings.data_dir / generation_filename(first.generated_ns)
    ]


def test_rules_written_by_the_previous_version_are_used_then_replaced(settings: Settings) -> None:
    # Version 0.1.0 of the job wrote rules.cbor itself, with no generation file.
    first = run_job(settings)
    (settings.data_dir / generation_filename(first.generated_ns)).unlink()
    before = snapshot(settings.data_dir)
    assert run_job(settings).skipped
    assert snapshot(settings.data_dir) == before
    assert generation_files(settings.data_dir) == []

    again = run_job(replace(settings, min_support=0.05))
    new = settings.data_dir / generation_filename(again.generated_ns)
    assert (settings.data_dir / RULES_FILENAME).samefile(new)


def test_zero_rules_are_refused_keeping_the_previous_ones_unless_allowed(
    settings: Settings,
) -> None:
    run_job(settings)
    before = snapshot(settings.data_dir)
    # No itemset is in every playlist: no rule at all.
    empty = replace(settings, min_support=1.0)
    with pytest.raises(MiningInputError, match=r"0 rules .* stay in place; lower MIN_SUPPORT"):
        run_job(empty)
    assert snapshot(settings.data_dir) == before

    allowed = run_job(replace(empty, allow_empty_rules=True))
    assert allowed.rules == 0
    assert read_rules(settings.data_dir / RULES_FILENAME).header.rule_count == 0


def test_zero_rules_on_a_first_run_write_nothing(settings: Settings) -> None:
    with pytest.raises(MiningInputError, match=r"0 rules .*: nothing was written"):
        run_job(replace(settings, min_support=1.0))
    assert not (settings.data_dir / CHECKPOINT_FILENAME).exists()
    assert generation_files(settings.data_dir) == []


class FileServer:
    """A real aiohttp server on 127.0.0.1 (own thread and loop) that counts the requests it gets."""

    def __init__(self, path: Path) -> None:
        self.requests = 0
        self._path = path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        return web.FileResponse(self._path)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/playlists.csv", self._serve)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/playlists.csv"

    def __enter__(self) -> FileServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.mark.slow  # ~6 s: three real runs of the CLI, one of them skipped
def test_an_up_to_date_run_is_quick_and_downloads_nothing(tmp_path: Path, dataset: Path) -> None:
    with FileServer(dataset) as server:
        data_dir = tmp_path / "data"
        started = time.perf_counter()
        mined = run_mining(data_dir, DATASET_URL=server.url, MIN_SUPPORT="0.1")
        mine_seconds = time.perf_counter() - started
        assert mined.returncode == 0, mined.stderr
        assert "download: " in mined.stderr
        downloads = server.requests
        assert downloads >= 1
        ns = read_checkpoint(data_dir / CHECKPOINT_FILENAME).generated_ns
        assert sorted(
            p.name for p in (tmp_path / "data").iterdir() if not p.name.startswith(".")
        ) == [
            "ml_processor_checkpoint.txt",
            f"rules-{ns}.cbor",
            "rules.cbor",
        ], "the downloaded dataset is deleted once read"

        started = time.perf_counter()
        skipped = run_mining(data_dir, DATASET_URL=server.url, MIN_SUPPORT="0.1")
        skip_seconds = time.perf_counter() - started
        assert skipped.returncode == 0, skipped.stderr
        assert "up to date" in skipped.stderr
        assert server.requests == downloads, "a skipped run must not touch the dataset URL"
        print(f"mine {mine_seconds:.2f} s, skip {skip_seconds:.2f} s")
        assert skip_seconds < mine_seconds / 2

        remined = run_mining(data_dir, DATASET_URL=server.url, MIN_SUPPORT="0.2")
        assert remined.returncode == 0, remined.stderr
        assert server.requests > downloads


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "data").mkdir()
    fd = os.open(tmp_path / "data" / LOCK_FILENAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield fd
    finally:
        os.close(fd)


def test_a_second_job_on_the_same_data_dir_waits_its_turn(
    tmp_path: Path, dataset: Path, held_lock: int
) -> None:
    env = mining_env(tmp_path / "data", DATASET_URL=dataset, MINING_ENGINE="pyfim")
    job = subprocess.Popen(
        [sys.executable, "-m", "mining"], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(1.0)
        assert job.poll() is None, "the job must wait while another holds DATA_DIR"
        assert not (tmp_path / "data" / CHECKPOINT_FILENAME).exists()
        fcntl.flock(held_lock, fcntl.LOCK_UN)
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 0, stderr
    assert "waiting for another mining job" in stderr
    assert (tmp_path / "data" / CHECKPOINT_FILENAME).exists()


def test_auto_records_its_bounds_and_mines_again_when_they_change(settings: Settings) -> None:
    auto = replace(settings, min_support="auto", auto_floor=5, auto_max_rules=50)
    first = run_job(auto)
    header = read_rules(settings.data_dir / RULES_FILENAME).header
    assert header.parameters.min_support == "auto"
    assert (header.parameters.auto_floor, header.parameters.auto_max_rules) == (5, 50)
    assert header.min_count is not None and header.min_count >= 5
    assert 0 < header.rule_count <= 50
    assert run_job(auto).skipped
    # A memory limit is not a parameter: the rules it allowed are still the ones asked for.
    assert run_job(replace(auto, memory_limit=4 << 30)).skipped
    for changed in (replace(auto, auto_floor=6), replace(auto, auto_max_rules=60)):
        again = run_job(changed)
        assert not again.skipped and again.generated_ns > first.generated_ns
