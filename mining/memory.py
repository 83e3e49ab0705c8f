"""Memory sizes, the memory this process may use, and what a process tree holds.

Linux only (``/proc`` and cgroup files); elsewhere the limits read as unknown and
the process tree reads as empty.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mining.sizes import format_size

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
# /proc/self/mountinfo: at least the mount point (5th field) before " - ", and the filesystem
# type, source and super options after it (proc(5)).
_MOUNTINFO_FIELDS = 5
_MOUNTINFO_TAIL_FIELDS = 3
# /proc/self/cgroup: hierarchy-ID:controller-list:cgroup-path (cgroups(7)).
_CGROUP_FIELDS = 3
# Share of the memory this process may use that the job takes by default. The rest is
# headroom for what the budget does not see: the kernel's own memory for the processes,
# the page cache a container's cgroup also charges, and what the job allocates between
# two polls of the guard (~30 MiB at the fastest growth measured, 620 MiB/s).
DEFAULT_SHARE = 0.75
# Below this, not even the interpreter with numpy and an engine fits.
MIN_LIMIT = 64 * MIB
# cgroup v1 reports "no limit" as a huge number near 2^63.
_UNLIMITED = 1 << 60

PROC = Path("/proc")


@dataclass(frozen=True)
class MemoryLimits:
    """What bounds this process's memory, each in bytes (None: not limited / unknown)."""

    physical: int | None
    available: int | None
    cgroup: int | None

    @property
    def usable(self) -> int | None:
        """The memory this process may use: the smallest bound known."""
        known = [v for v in (self.physical, self.available, self.cgroup) if v is not None]
        return min(known) if known else None

    def describe(self) -> str:
        """One line naming each bound, for the job's log."""

        def show(value: int | None) -> str:
            return "none" if value is None else format_size(value)

        return (
            f"physical {show(self.physical)}, available {show(self.available)}, "
            f"cgroup limit {show(self.cgroup)}"
        )


def _meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError), open(PROC / "meminfo", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            fields = rest.split()
            if fields and fields[0].isdigit():
                values[name] = int(fields[0]) * KIB
    return values


def _read_limit(path: Path) -> int | None:
    """A cgroup limit file: a byte count, ``max`` (v2) or a near-2^63 value (v1) for none."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    value = int(text)
    return value if value < _UNLIMITED else None


def _mounts() -> list[tuple[str, Path, str, str]]:
    """``(root, mount point, filesystem type, super options)`` of every mount."""
    mounts = []
    with contextlib.suppress(OSError), open(PROC / "self" / "mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= _MOUNTINFO_FIELDS and len(tail) >= _MOUNTINFO_TAIL_FIELDS:
                mounts.append((fields[3], Path(fields[4]), tail[0], tail[2]))
    return mounts


def _cgroup_dirs(controllers: dict[str, str]) -> list[tuple[Path, Path]]:
    """``(this process's cgroup directory, its mount point)`` for the v2 and v1 memory cgroups."""
    found = []
    for root, point, fstype, options in _mounts():
        if fstype == "cgroup2" and "" in controllers:
            path = controllers[""]
        elif fstype == "cgroup" and "memory" in options.split(",") and "memory" in controllers:
            path = controllers["memory"]
        else:
            continue
        # Without a cgroup namespace the path is the host's; the mount shows it from `root`.
        relative = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
        found.append(((point / relative).resolve(), point.resolve()))
    return found


def cgroup_limit() -> int | None:
    """The tightest memory limit of this process's cgroups (v2 ``memory.max``, v1 limits).

    Every ancestor's limit applies too, so each level up to the mount point is read.
    """
    controllers: dict[str, str] = {}
    with contextlib.suppress(OSError), open(PROC / "self" / "cgroup", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == _CGROUP_FIELDS:
                for name in parts[1].split(",") if parts[1] else [""]:
                    controllers[name] = parts[2]
    limits = []
    for directory, mount_point in _cgroup_dirs(controllers):
        level = directory
        while True:
            for name in ("memory.max", "memory.limit_in_bytes"):
                limit = _read_limit(level / name)
                if limit is not None:
                    limits.append(limit)
            if level in (mount_point, level.parent):
                break
            level = level.parent
    return min(limits) if limits else None


def memory_limits() -> MemoryLimits:
    """Physical memory, memory available now, and the cgroup limit of this process."""
    info = _meminfo()
    return MemoryLimits(
        physical=info.get("MemTotal"), available=info.get("MemAvailable"), cgroup=cgroup_limit()
    )


def default_limit(limits: MemoryLimits) -> int:
    """The budget when MINING_MEMORY_LIMIT is not set: DEFAULT_SHARE of the usable memory."""
    usable = limits.usable
    if usable is None:
        # Not Linux, or /proc hidden: assume a small container rather than a large host.
        usable = 2 * GIB
    return max(MIN_LIMIT, int(usable * DEFAULT_SHARE))


def _process_memory(pid: int) -> int:
    """Proportional set size of ``pid`` (pages shared with a forked parent counted once).

    PSS, not RSS: a forked worker shares its parent's pages until either writes them,
    and the sum of RSS over both would count those pages twice.
    """
    try:
        with open(PROC / str(pid) / "smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * KIB
    except OSError:
        pass
    try:
        with open(PROC / str(pid) / "statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _parents() -> dict[int, int]:
    """Every process's parent pid, from ``/proc/*/stat``."""
    parent_of = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(PROC):
            if not entry.name.isdigit():
                continue
            try:
                with open(os.path.join(entry.path, "stat"), "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # The command name (field 2) is in parentheses and may hold spaces.
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) > 1:
                parent_of[int(entry.name)] = int(fields[1])
    return parent_of


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (a JVM started by an engine included)."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def tree_memory(root: int) -> int:
    """Bytes of memory held by ``root`` and its descendants (sum of their PSS)."""
    return sum(_process_memory(pid) for pid in process_tree(root))


def release_free_memory() -> None:
    """Hand memory freed by Python objects and pyarrow back to the system.

    Both allocators keep freed pages for reuse, and the guard counts what is resident:
    after reading a 200,000-playlist CSV this took the reader's process from 678 MiB
    to 196 MiB.
    """
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
