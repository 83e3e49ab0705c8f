"""``kill -9`` at any moment: DATA_DIR holds a committed pair that a fresh server serves."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from mining.checkpoint import CHECKPOINT_FILENAME, format_model_date, read_checkpoint
from mining.datadir import generation_filename, generation_files, read_committed_rules
from mining.job import KILL_HOOK_VARIABLE, run_job
from mining.rulesfile import RULES_FILENAME
from mining.settings import Settings
from tests.helpers.processes import http_api_servers, run_mining, served_model_date

ROOT = Path(__file__).parents[2]
DATASET = Path(__file__).parents[1] / "data" / "synth_ds1.csv.xz"
# Two parameter sets to alternate between, so that every run really mines and writes.
SUPPORTS = ("0.05", "0.06")
MAX_ROUNDS = 6
TIME_BUDGET_SECONDS = 40


def start_job(data_dir: Path, support: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATASET_URL": str(DATASET), "DATA_DIR": str(data_dir)}
    env.update(MIN_SUPPORT=support, MINING_ENGINE="pyfim", LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [sys.executable, "-m", "mining"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL
    )


def committed_pair(data_dir: Path) -> tuple[int, float | str]:
    """The pair a server would load, checked to be readable and consistent: (ns, support)."""
    checkpoint = read_checkpoint(data_dir / CHECKPOINT_FILENAME)
    _, ruleset = read_committed_rules(data_dir, checkpoint)
    return checkpoint.generated_ns, ruleset.header.parameters.min_support


def temporaries(data_dir: Path) -> set[str]:
    return {name for name in os.listdir(data_dir) if ".tmp-" in name}


def kill_when_written(job: subprocess.Popen[bytes], data_dir: Path, prefix: str) -> bool:
    """SIGKILL the job as soon as a new temporary file named ``prefix...`` appears; False if
    too late."""
    earlier = temporaries(data_dir)
    while job.poll() is None:
        if any(new.startswith(prefix) for new in temporaries(data_dir) - earlier):
            job.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.0005)
    return False


@pytest.mark.slow  # ~15-30 s: up to 8 real runs of the job, six of them killed
def test_a_killed_job_leaves_the_previous_or_the_new_pair(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    started = time.monotonic()
    first = start_job(data_dir, SUPPORTS[0])
    assert first.wait(timeout=120) == 0
    full_run = time.monotonic() - started
    rng = random.Random(20251128)
    killed_mid_write = 0
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    for round_ in range(MAX_ROUNDS):
        if time.monotonic() > deadline:
            break
        before = committed_pair(data_dir)
        support = SUPPORTS[1] if before[1] == float(SUPPORTS[0]) else SUPPORTS[0]
        earlier = temporaries(data_dir)
        job = start_job(data_dir, support)
        # In turn: at a random moment, while the rules are written, while the checkpoint is.
        if round_ % 3 == 0:
            time.sleep(rng.uniform(0, full_run))
            killed = job.poll() is None
            job.send_signal(signal.SIGKILL)
        else:
            target = "rules-" if round_ % 3 == 1 else CHECKPOINT_FILENAME
            killed = kill_when_written(job, data_dir, target)
        job.wait(timeout=60)
        after = committed_pair(data_dir)
        assert after == before or (after[1] == float(support) and after[0] > before[0])
        leftovers = temporaries(data_dir)
        assert all(name.startswith(("rules", CHECKPOINT_FILENAME)) for name in leftovers)
        if killed and any(not name.startswith(RULES_FILENAME) for name in leftovers - earlier):
            # A staged generation or checkpoint is left only by a kill before the commit.
            assert after == before
            killed_mid_write += 1
    assert killed_mid_write >= 1, "no round managed to kill the job while it was writing"
    # The next complete run clears what the killed ones left and commits a new pair.
    final = start_job(data_dir, "0.07")
    assert final.wait(timeout=120) == 0
    assert committed_pair(data_dir)[1] == 0.07
    assert not temporaries(data_dir)
    assert len(generation_files(data_dir)) == 1


# -- a kill after every step of the commit, each followed by a fresh server ------------------

# Three themes of songs played together, over 60 playlists: rules at both supports below.
PLAYLISTS = "pid,track_name\n" + "".join(
    f"{pid},{song}\n"
    for pid in range(60)
    for song in (["a", "b", "c"] if pid % 2 else ["d", "e"]) + (["f", "g"] if pid % 3 else [])
)
OLD_SUPPORT, NEW_SUPPORT = "0.3", "0.4"
HOOK_LINE = re.compile(rf"test hook {KILL_HOOK_VARIABLE}: killing the job after step (.+)")


@dataclass(frozen=True)
class Kill:
    """One run of the job killed by the test hook, and what it left in its DATA_DIR."""

    data_dir: Path
    step: str


def kill_at_every_step(prepared: Path, dataset: Path, workdir: Path, steps: int) -> list[Kill]:
    """Run the job on copies of ``prepared``, killed after step 0, 1, ... ``steps`` of its
    commit (a few at a time); the kills, up to the first run that outlives the last step."""

    def run_killed_after(k: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
        data_dir = workdir / f"killed-after-{k}"
        # cp -a keeps hard links: the copy is the layout the job would find.
        subprocess.run(["cp", "-a", str(prepared), str(data_dir)], check=True)
        env = {KILL_HOOK_VARIABLE: str(k), "MINING_ENGINE": "pyfim"}
        return data_dir, run_mining(data_dir, DATASET_URL=dataset, MIN_SUPPORT=NEW_SUPPORT, **env)

    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(run_killed_after, range(steps + 1)))
    kills = []
    for data_dir, result in runs:
        if result.returncode == 0:
            break
        assert result.returncode == -signal.SIGKILL, result.stderr
        [step] = HOOK_LINE.findall(result.stderr)
        kills.append(Kill(data_dir, step))
    else:
        pytest.fail(f"the commit did not end within {steps} steps")
    return kills


@pytest.mark.slow  # ~17 s of CPU: 9 runs of the job (3 at a time) and 8 fresh servers
@pytest.mark.parametrize("layout", ["generations", "rules.cbor only"])
def test_after_a_kill_at_any_commit_step_a_fresh_server_serves_old_or_new_rules(
    tmp_path: Path, layout: str
) -> None:
    dataset = tmp_path / "playlists.csv"
    dataset.write_text(PLAYLISTS)
    prepared = tmp_path / "prepared"
    first = run_mining(prepared, DATASET_URL=dataset, MIN_SUPPORT=OLD_SUPPORT)
    assert first.returncode == 0, first.stderr
    old = read_checkpoint(prepared / CHECKPOINT_FILENAME)
    if layout == "rules.cbor only":
        # As version 0.1.0 of the job left DATA_DIR: rules.cbor and no generation file.
        (prepared / generation_filename(old.generated_ns)).unlink()

    # start, then each generation file, checkpoint and rules.cbor staged and renamed (6 steps),
    # then the old generation removed (none when rules.cbor stood alone).
    steps = 8 if layout == "generations" else 7
    kills = kill_at_every_step(prepared, dataset, tmp_path, steps)
    assert len(kills) == steps, [k.step for k in kills]

    with http_api_servers([kill.data_dir for kill in kills]) as urls:
        served = [served_model_date(url, timeout=20) for url in urls]
    committed = [read_checkpoint(kill.data_dir / CHECKPOINT_FILENAME) for kill in kills]
    for kill, date, checkpoint in zip(kills, served, committed, strict=True):
        assert date is not None, f"a fresh server found nothing to serve after {kill.step}"
        assert date == checkpoint.model_date, kill.step
    # The old rules up to the checkpoint's rename, the new ones from then on.
    old_date = format_model_date(old.generated_ns)
    switch = [kill.step for kill in kills].index(f"{CHECKPOINT_FILENAME} renamed")
    assert served[:switch] == [old_date] * switch
    assert old_date not in served[switch:]

    # The next run completes what each kill left, and mines only if the commit had not happened.
    for kill in kills:
        settings = Settings(
            dataset_url=str(dataset), data_dir=kill.data_dir, min_support=0.4, engine="pyfim"
        )
        outcome = run_job(settings)
        checkpoint = read_checkpoint(kill.data_dir / CHECKPOINT_FILENAME)
        generation = kill.data_dir / generation_filename(checkpoint.generated_ns)
        assert generation_files(kill.data_dir) == [generation], kill.step
        assert (kill.data_dir / RULES_FILENAME).samefile(generation), kill.step
        assert not temporaries(kill.data_dir), kill.step
        assert outcome.skipped == (kill in kills[switch:]), kill.step
