"""Atomic replacement: the final name holds either the old or the new content, never a mix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mining.atomicfile import atomic_write_bytes


def test_replaces_content_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "rules.cbor"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["rules.cbor"]


def test_killed_mid_write_leaves_previous_content(tmp_path: Path) -> None:
    target = tmp_path / "rules.cbor"
    atomic_write_bytes(target, b"previous")
    # A child that dies by SIGKILL while its temporary file is half written.
    script = textwrap.dedent(
        f"""
        import os, signal
        import mining.atomicfile as af
        def die(fd):
            os.kill(os.getpid(), signal.SIGKILL)
        af.os.fsync = die
        af.atomic_write_bytes(af.Path({str(target)!r}), b"x" * 10_000_000)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -9
    assert target.read_bytes() == b"previous"


def test_failed_write_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "rules.cbor"
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(target, b"data")
    assert not (tmp_path / "sub").exists()
    target.parent.mkdir()
    atomic_write_bytes(target, b"data")
    assert target.read_bytes() == b"data"
