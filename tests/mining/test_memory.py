"""Memory sizes, the memory limit a process lives under (cgroup v1 and v2), and process trees."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mining import memory
from mining.errors import SettingsError
from mining.memory import GIB, MIB, MemoryLimits
from mining.settings import Settings
from mining.sizes import format_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2GiB", 2 * GIB),
        ("512MiB", 512 * MIB),
        ("1.5GB", 1_500_000_000),
        ("1.5 gib", 3 * GIB // 2),
        ("1000000000", 1_000_000_000),
        (".5GiB", GIB // 2),
    ],
)
def test_the_budget_takes_sizes_in_the_usual_units(text: str, size: int) -> None:
    settings = Settings.from_env({"MINING_MEMORY_LIMIT": text})
    assert settings.memory_limit == size


@pytest.mark.parametrize("text", ["GiB", "2 GiBs", "-1GiB", "2 gigabytes", "1e9", "2GiB!"])
def test_what_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(SettingsError, match="must be a size such as"):
        Settings.from_env({"MINING_MEMORY_LIMIT": text})


def _fake_system(root: Path, mountinfo: str, cgroup: str, files: dict[str, str]) -> Path:
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(mountinfo.format(root=root))
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "meminfo").write_text(
        "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    8192000 kB\n"
    )
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return proc


def test_a_cgroup_v2_limit_of_an_ancestor_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Kubernetes pod without a cgroup namespace: the limit is on the pod, the container's
    # own memory.max says "max".
    proc = _fake_system(
        tmp_path,
        "41 31 0:38 / {root}/cg2 rw,relatime - cgroup2 cgroup2 rw\n",
        "0::/kubepods/pod1/ctr\n",
        {
            "cg2/kubepods/memory.max": "max\n",
            "cg2/kubepods/pod1/memory.max": f"{2 * GIB}\n",
            "cg2/kubepods/pod1/ctr/memory.max": "max\n",
        },
    )
    monkeypatch.setattr(memory, "PROC", proc)
    limits = memory.memory_limits()
    assert limits == MemoryLimits(
        physical=16_384_000 * 1024, available=8_192_000 * 1024, cgroup=2 * GIB
    )
    assert limits.usable == 2 * GIB
    assert memory.default_limit(limits) == int(2 * GIB * memory.DEFAULT_SHARE)
    assert "cgroup limit 2 GiB" in limits.describe()


def test_a_cgroup_v1_limit_is_found_under_the_mount_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Docker on cgroup v1: the memory hierarchy is mounted from /docker/abc, and the
    # process's path repeats that root.
    proc = _fake_system(
        tmp_path,
        "35 31 0:32 /docker/abc {root}/cgmem rw,relatime - cgroup cgroup rw,memory\n"
        "36 31 0:33 / {root}/cgcpu rw,relatime - cgroup cgroup rw,cpu\n",
        "5:cpu:/docker/abc\n4:memory:/docker/abc/sub\n",
        {
            "cgmem/memory.limit_in_bytes": "9223372036854771712\n",
            "cgmem/sub/memory.limit_in_bytes": f"{GIB}\n",
            "cgcpu/memory.limit_in_bytes": "1\n",
        },
    )
    monkeypatch.setattr(memory, "PROC", proc)
    assert memory.cgroup_limit() == GIB
    assert memory.memory_limits().usable == GIB


def test_without_any_limit_the_available_memory_bounds_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = _fake_system(
        tmp_path,
        "41 31 0:38 / {root}/cg2 rw,relatime - cgroup2 cgroup2 rw\n",
        "0::/\n",
        {"cg2/cgroup.procs": ""},
    )
    monkeypatch.setattr(memory, "PROC", proc)
    limits = memory.memory_limits()
    assert limits.cgroup is None
    assert memory.default_limit(limits) == int(8_192_000 * 1024 * memory.DEFAULT_SHARE)
    assert memory.default_limit(MemoryLimits(None, None, None)) == int(
        2 * GIB * memory.DEFAULT_SHARE
    )


HOLD = textwrap.dedent(
    """
    import subprocess, sys
    block = bytearray({size}) ; block[::4096] = b"x" * len(block[::4096])
    {spawn}
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_the_tree_includes_every_descendant_and_its_memory() -> None:
    grandchild_code = HOLD.format(size=96 * MIB, spawn="")
    child_code = HOLD.format(
        size=128 * MIB,
        spawn=(
            f"g = subprocess.Popen([sys.executable, '-c', {grandchild_code!r}], "
            "stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True); g.stdout.readline(); "
            "print(g.pid, flush=True)"
        ),
    )
    before = memory.tree_memory(os.getpid())
    child = subprocess.Popen(
        [sys.executable, "-c", child_code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        assert child.stdout.readline().strip() == "ready"
        tree = memory.process_tree(os.getpid())
        assert {child.pid, grandchild} <= set(tree)
        grown = memory.tree_memory(os.getpid()) - before
        assert 200 * MIB < grown < 400 * MIB, format_size(grown)
    finally:
        child.kill()
        child.wait(timeout=10)
        # The grandchild reads its stdin from the child: it ends with it.
