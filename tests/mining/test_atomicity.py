"""``kill -9`` at any moment: DATA_DIR holds a readable, consistent rules + checkpoint pair."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mining.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from mining.rulesfile import RULES_FILENAME, read_rules

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


def committed_pair(data_dir: Path) -> tuple[int, float]:
    """The pair in DATA_DIR, checked to be readable and consistent: (generation ns, support)."""
    checkpoint = read_checkpoint(data_dir / CHECKPOINT_FILENAME)
    header = read_rules(data_dir / RULES_FILENAME).header
    assert header.generated_ns == checkpoint.generated_ns
    assert header.dataset_url == checkpoint.dataset_url
    return checkpoint.generated_ns, header.parameters.min_support


def temporaries(data_dir: Path) -> set[str]:
    return {name for name in os.listdir(data_dir) if ".tmp-" in name}


def kill_when_written(job: subprocess.Popen[bytes], data_dir: Path, name: str) -> bool:
    """SIGKILL the job as soon as a new temporary file for ``name`` appears; False if too late."""
    earlier = temporaries(data_dir)
    while job.poll() is None:
        if any(new.startswith(name) for new in temporaries(data_dir) - earlier):
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
            target = RULES_FILENAME if round_ % 3 == 1 else CHECKPOINT_FILENAME
            killed = kill_when_written(job, data_dir, target)
        job.wait(timeout=60)
        after = committed_pair(data_dir)
        assert after == before or (after[1] == float(support) and after[0] > before[0])
        leftovers = temporaries(data_dir)
        assert all(name.startswith((RULES_FILENAME, CHECKPOINT_FILENAME)) for name in leftovers)
        if killed and leftovers - earlier:
            # This run's staged files are left only by a kill before the renames.
            assert after == before
            killed_mid_write += 1
    assert killed_mid_write >= 1, "no round managed to kill the job while it was writing"
    # The next complete run clears what the killed ones left and commits a new pair.
    final = start_job(data_dir, "0.07")
    assert final.wait(timeout=120) == 0
    assert committed_pair(data_dir)[1] == 0.07
    assert not temporaries(data_dir)
