#!/usr/bin/env python3
"""Print the project's requirements for some extras, one per line, read from setup.cfg.

The images' build stage runs this before the sources are copied in, so their dependencies
(pinned by constraints.txt) are installed in a layer of their own that survives source changes.
Standard library only: it runs on any Python 3.11 base, before anything is installed.

    python3 containers/requirements.py [--build] [EXTRA ...] [--root DIR]

``--build`` adds pyproject.toml's build requirements (setuptools, wheel).
"""

from __future__ import annotations

import argparse
import configparser
import tomllib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def requirements(root: Path, extras: Iterable[str], *, build: bool = False) -> list[str]:
    """install_requires, then each extra's requirements, then (``build``) the build system's."""
    config = configparser.ConfigParser()
    if not config.read(root / "setup.cfg", encoding="utf-8"):
        raise SystemExit(f"requirements: cannot read {root / 'setup.cfg'}")
    result = _lines(config["options"]["install_requires"])
    declared = config["options.extras_require"]
    for extra in extras:
        if extra not in declared:
            raise SystemExit(f"requirements: setup.cfg declares no extra {extra!r}")
        result += _lines(declared[extra])
    if build:
        with (root / "pyproject.toml").open("rb") as pyproject:
            result += tomllib.load(pyproject)["build-system"]["requires"]
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
