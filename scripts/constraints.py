#!/usr/bin/env python3
"""Write constraints.txt: the exact versions, taken from this virtualenv, of every package the
images install (`make constraints`).

The images install the project with its `mining` and `fast` extras (the ML job), its `serve`
extra (the API) or its `spark` and `fast` extras (the ML job on Spark), built with
pyproject.toml's build requirements. This walks those requirements and theirs, as installed
here, and pins each at its installed version. The Dockerfile installs with `--constraint
constraints.txt`, so an image gets the versions the tests ran against, and
`make .venv/.installed` installs with it too, so the tests run against the versions the images get.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from types import ModuleType

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
# The extras the images install (containers/Dockerfile).
IMAGE_EXTRAS = ("mining", "fast", "serve", "spark")
HEADER = """\
# The exact version of every package the container images install: the project's requirements
# with its mining, fast, serve and spark extras and its build requirements, and theirs.
# Generated from the virtualenv by `make constraints` (scripts/constraints.py): do not edit.
"""


def _load_requirements_module() -> ModuleType:
    """containers/requirements.py, which reads the project's requirements from pyproject.toml."""
    spec = importlib.util.spec_from_file_location(
        "container_requirements", ROOT / "containers" / "requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ConstraintsError(RuntimeError):
    """A requirement is not installed here, or not at a version it accepts."""


def pins(roots: Iterable[str]) -> dict[str, str]:
    """Canonical name -> installed version of every package ``roots`` need, transitively."""
    environment = {key: str(value) for key, value in default_environment().items()}
    pinned: dict[str, str] = {}
    walked: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(text) for text in roots]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if (name, frozenset(requirement.extras)) in walked:
            continue
        walked.add((name, frozenset(requirement.extras)))
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ConstraintsError(
                f"{requirement} is required but not installed here: run make .venv/.installed"
            ) from None
        version = distribution.version
        if not requirement.specifier.contains(version, prereleases=True):
            raise ConstraintsError(f"{requirement} is required, {name} {version} is installed")
        pinned[name] = version
        for text in distribution.requires or ():
            dependency = Requirement(text)
            wanted = requirement.extras or {""}
            if dependency.marker is not None and not any(
                dependency.marker.evaluate({**environment, "extra": extra}) for extra in wanted
            ):
                continue
            pending.append(dependency)
    return pinned


def render(pinned: dict[str, str]) -> str:
    """The constraints file's text: the header, then one ``name==version`` per line, sorted."""
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pinned.items()))


def generate() -> str:
    """constraints.txt as this virtualenv and the checkout's pyproject.toml make it."""
    requirements = _load_requirements_module().requirements
    return render(pins(requirements(ROOT, IMAGE_EXTRAS, build=True)))


def main() -> int:
    """Write constraints.txt, or with --check say whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    try:
        text = generate()
    except ConstraintsError as exc:
        print(f"constraints: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = CONSTRAINTS.read_text(encoding="utf-8") if CONSTRAINTS.exists() else ""
        if current != text:
            print("constraints: constraints.txt is stale: run make constraints", file=sys.stderr)
            return 1
        return 0
    # Rewritten only when it changes: the virtualenv's stamp depends on it (Makefile).
    if not CONSTRAINTS.exists() or CONSTRAINTS.read_text(encoding="utf-8") != text:
        CONSTRAINTS.write_text(text, encoding="utf-8")
        print(f"wrote {CONSTRAINTS.relative_to(ROOT)}: {text.count('==')} pinned packages")
    else:
        print(f"{CONSTRAINTS.relative_to(ROOT)} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
