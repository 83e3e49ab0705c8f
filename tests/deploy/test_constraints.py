"""constraints.txt, the versions the images install: complete, consistent with pyproject.toml,
and what this virtualenv (the one the tests run in) has installed."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.deployfiles import REPO, load_script

CONSTRAINTS = REPO / "constraints.txt"
CONSTRAINTS_SCRIPT = REPO / "scripts" / "constraints.py"
REQUIREMENTS_SCRIPT = REPO / "containers" / "requirements.py"
# The extras each image installs (containers/Dockerfile).
IMAGE_EXTRAS = {"mining": ("mining", "fast"), "api": ("serve",), "spark": ("spark", "fast")}


def pinned() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    return pins


def test_constraints_are_what_make_constraints_writes_from_this_virtualenv() -> None:
    # Fails after a change to pyproject.toml's requirements until `make constraints` is run.
    result = subprocess.run(
        [sys.executable, str(CONSTRAINTS_SCRIPT), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_line_pins_one_exact_version_of_a_canonically_named_package() -> None:
    pins = pinned()
    assert pins
    for name, version in pins.items():
        assert name == canonicalize_name(name)
        assert version and "," not in version and "*" not in version


@pytest.mark.parametrize("image", IMAGE_EXTRAS)
def test_what_each_image_installs_is_pinned_at_a_version_pyproject_accepts(image: str) -> None:
    requirements = load_script(REQUIREMENTS_SCRIPT).requirements
    pins = pinned()
    for text in requirements(REPO, IMAGE_EXTRAS[image], build=True):
        requirement = Requirement(text)
        version = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), (text, version)


@pytest.mark.parametrize("image", IMAGE_EXTRAS)
def test_the_build_reads_the_same_requirements_from_pyproject_as_pip_from_the_package(
    image: str,
) -> None:
    # The Dockerfile's dependency layer reads pyproject.toml with the standard library alone; pip
    # later installs the package with the same extras: both must name the same requirements.
    requirements = load_script(REQUIREMENTS_SCRIPT).requirements
    extras = IMAGE_EXTRAS[image]
    from_package = {
        str(Requirement(text)).split(";")[0].strip()
        for text in metadata.requires("playlist-recommender") or ()
        if (marker := Requirement(text).marker) is None
        or any(marker.evaluate({"extra": extra}) for extra in extras)
    }
    assert set(requirements(REPO, extras)) == from_package


def test_an_unknown_extra_is_one_line_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), "gpu"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == "requirements: pyproject.toml declares no extra 'gpu'\n"
