#!/usr/bin/env python3
"""Print the project's requirements for some extras, one per line, read from pyproject.toml.

The images' build stage runs this before the sources are copied in, so their dependencies
(pinned by constraints.txt) are installed in a layer of their own that survives source changes.
Standard library only: it runs on any Python 3.11 base, before anything is installed.

    python3 containers/requirements.py [--build] [EXTRA ...] [--root DIR]

An extra that names the project itself (``playlist-recommender[mining,serve]``) stands for those
extras' requirements. ``--build`` adds the build system's requirements (setuptools, wheel).
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# A requirement on the project itself with extras: `name[extra, ...]`, nothing else.
_SELF_REFERENCE = re.compile(r"^\s*(?P<name>[A-Za-z0-9._-]+)\s*\[(?P<extras>[^\]]*)\]\s*$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _extra(project: dict[str, Any], extra: str, seen: tuple[str, ...]) -> list[str]:
    declared = project.get("optional-dependencies", {})
    if extra not in declared:
        raise SystemExit(f"requirements: pyproject.toml declares no extra {extra!r}")
    if extra in seen:
        raise SystemExit(f"requirements: the extra {extra!r} includes itself")
    result: list[str] = []
    for text in declared[extra]:
        match = _SELF_REFERENCE.match(text)
        if match and _normalise(match["name"]) == _normalise(project["name"]):
            for inner in match["extras"].split(","):
                result += _extra(project, inner.strip(), (*seen, extra))
        else:
            result.append(text)
    return result


def requirements(root: Path, extras: Iterable[str], *, build: bool = False) -> list[str]:
    """The dependencies, then each extra's requirements, then (``build``) the build system's."""
    try:
        with (root / "pyproject.toml").open("rb") as file:
            pyproject = tomllib.load(file)
    except OSError as exc:
        raise SystemExit(f"requirements: cannot read {root / 'pyproject.toml'}: {exc}") from None
    project = pyproject["project"]
    result = list(project.get("dependencies", []))
    for extra in extras:
        result += _extra(project, extra, ())
    if build:
        result += pyproject["build-system"]["requires"]
    return list(dict.fromkeys(result))


def main() -> None:
    """Print the requirements named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", metavar="EXTRA")
    parser.add_argument("--build", action="store_true", help="add the build requirements")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project's directory")
    args = parser.parse_args()
    print("\n".join(requirements(args.root, args.extras, build=args.build)))


if __name__ == "__main__":
    main()
