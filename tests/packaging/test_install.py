"""`pip install .` into a fresh virtualenv: no warning, the data files installed, and every
console script runs from there (not from the checkout)."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from mining.version import DISTRIBUTION, __version__

REPO = Path(__file__).resolve().parents[2]
with (REPO / "pyproject.toml").open("rb") as _file:
    PYPROJECT = tomllib.load(_file)
SCRIPTS = PYPROJECT["project"]["scripts"]
# What the build reads besides the packages.
BUILD_FILES = ("pyproject.toml", "setup.py", "README.md", "LICENSE")
# A line of the build's or pip's output that reports a problem, however it is spelled.
WARNING = re.compile(r"warn|deprecat|!!", re.IGNORECASE)
PACKAGE_DATA = (
    "mining/data/sample_playlists.csv.gz",
    "mining/data/PROVENANCE.md",
    "mining/data/spotify-songs/2023_spotify_songs.csv",
    "http_api/static/index.html",
    "http_api/openapi.json",
)


def _source_copy(destination: Path) -> Path:
    """The files a build of the checkout reads, copied without build leftovers or caches."""
    patterns = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    leftovers = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "build")
    destination.mkdir()
    for name in BUILD_FILES:
        shutil.copy2(REPO / name, destination / name)
    for folder in REPO.iterdir():
        if folder.is_dir() and any(fnmatch.fnmatch(folder.name, p) for p in patterns):
            shutil.copytree(folder, destination / folder.name, ignore=leftovers)
    return destination


def _fresh_venv(path: Path) -> Path:
    """A new virtualenv that sees this one's packages after its own (pip, setuptools, the
    dependencies), so the install needs no index: the project itself is built and installed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A path line in a .pth file is appended to sys.path; the .pth files found there are not
    # run, so this virtualenv's editable install of the checkout stays invisible.
    Path(site, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def _clean_environment() -> dict[str, str]:
    """The environment without pip's configuration (the machine's index settings) or
    PYTHONDONTWRITEBYTECODE, which makes setuptools warn that it cannot byte-compile."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "PYTHON"))
    }
    environment["PIP_CONFIG_FILE"] = os.devnull
    return environment


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the fresh virtualenv's python, pip's verbose output) after `pip install .`."""
    root = tmp_path_factory.mktemp("install")
    source = _source_copy(Path(root, "src"))
    python = _fresh_venv(root / "venv")
    result = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--verbose",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--ignore-installed",
            str(source),
        ],
        capture_output=True,
        text=True,
        env=_clean_environment(),
        cwd=root,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return python, output


@pytest.mark.slow
def test_pip_install_prints_no_warning(installed: tuple[Path, str]) -> None:
    _, output = installed
    warnings = [line for line in output.splitlines() if WARNING.search(line)]
    assert not warnings, "\n".join(warnings)
    assert f"Successfully installed {DISTRIBUTION}-{__version__}" in output


@pytest.mark.slow
def test_the_packages_and_their_data_come_from_the_install(installed: tuple[Path, str]) -> None:
    python, _ = installed
    site = Path(
        subprocess.run(
            [str(python), "-c", "import mining; print(mining.__file__)"],
            capture_output=True,
            text=True,
            cwd=python.parent,
            check=True,
        ).stdout.strip()
    ).parent.parent
    assert site.is_relative_to(python.parent.parent), site
    for name in PACKAGE_DATA:
        assert (site / name).is_file(), name
    # The compiled small-query path is built by `pip install` where a compiler is present.
    assert list((site / "recommender").glob("_smallquery.*.so"))
    license_files = list(site.glob(f"{DISTRIBUTION.replace('-', '_')}-*.dist-info/licenses/*"))
    assert [path.name for path in license_files] == ["LICENSE"]


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_console_script_prints_the_version(installed: tuple[Path, str], script: str) -> None:
    python, _ = installed
    result = subprocess.run(
        [str(python.parent / script), "--version"],
        capture_output=True,
        text=True,
        cwd=python.parent,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{script} ({DISTRIBUTION}) {__version__}\n"


@pytest.mark.slow
def test_the_installed_job_mines_the_bundled_sample(
    installed: tuple[Path, str], tmp_path: Path
) -> None:
    python, _ = installed
    result = subprocess.run(
        [str(python.parent / "playlist-recommender-mine")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "rules.cbor").is_file()
    assert (tmp_path / "data" / "ml_processor_checkpoint.txt").is_file()


def test_every_python_m_entry_point_has_its_console_script() -> None:
    assert {target.split(":")[0] for target in SCRIPTS.values()} == {
        f"{package}.__main__" for package in ("mining", "http_api", "evaluation")
    } | {"client.cli"}


@pytest.mark.parametrize("module", ["mining", "http_api", "client", "evaluation"])
def test_python_m_version_prints_the_same_version(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--version"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"python -m {module} ({DISTRIBUTION}) {__version__}\n"
