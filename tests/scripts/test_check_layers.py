"""scripts/check_layers.py on synthetic package trees: every rule is shown to fail, through
every kind of import, directly and through other packages of the project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.deployfiles import REPO, load_script

SCRIPT = REPO / "scripts" / "check_layers.py"
layers = load_script(SCRIPT)
PACKAGES = ("mining", "recommender", "actors", "http_api", "client", "evaluation")


def tree(root: Path, files: dict[str, str]) -> Path:
    """Every package of the project, empty, plus ``files`` (path -> source) under ``root``."""
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def broken(root: Path) -> list[tuple[str, str]]:
    return [(v.package, v.forbidden) for v in layers.check(root)]


def test_a_tree_that_keeps_every_layer_passes(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "mining/job.py": "import pandas\nimport mlxtend.frequent_patterns\nimport fim\n",
            "mining/rulesfile.py": "import numpy\n",
            "recommender/index.py": "import numpy\nfrom mining import rulesfile\n",
            "actors/server.py": "import pykka\nimport recommender.index\n",
            "http_api/app.py": "import aiohttp\nfrom actors import server\nimport orjson\n",
            "client/cli.py": "import aiohttp\nfrom mining.rulesfile import load\n",
            "evaluation/run.py": "import http_api.app\nimport mining.job\nimport pandas\n",
        },
    )
    assert layers.check(tmp_path) == []


RULE_CASES = [
    (package, forbidden) for package, names in layers.RULES.items() for forbidden in sorted(names)
]


@pytest.mark.parametrize(("package", "forbidden"), RULE_CASES)
def test_each_rule_fails_on_a_direct_import(tmp_path: Path, package: str, forbidden: str) -> None:
    tree(tmp_path, {f"{package}/module.py": f"import os\nimport {forbidden}.sub\n"})
    (violation,) = layers.check(tmp_path)
    assert (violation.package, violation.forbidden) == (package, forbidden)
    assert violation.chain == ((f"{package}.module", 2),)
    assert violation.imported == f"{forbidden}.sub"
    assert str(violation) == (
        f"{package} must not import {forbidden}: {package}.module:2 imports {forbidden}.sub"
    )


@pytest.mark.parametrize(
    "source",
    [
        "from http_api import state\n",
        "from http_api.state import Snapshot\n",
        "import http_api\n",
        "def later():\n    import http_api.state\n",
        "try:\n    from http_api import state\nexcept ImportError:\n    state = None\n",
    ],
)
def test_every_import_form_counts(tmp_path: Path, source: str) -> None:
    tree(tmp_path, {"actors/frontend.py": source, "http_api/state.py": ""})
    assert broken(tmp_path) == [("actors", "http_api")]


def test_the_server_reaching_pandas_through_a_mining_module_names_the_chain(
    tmp_path: Path,
) -> None:
    tree(
        tmp_path,
        {
            "http_api/app.py": "\n\nfrom mining import settings\n",
            "mining/settings.py": "from mining.reader import read\n",
            "mining/reader.py": "import os\n\n\nimport pandas.api.types\n",
        },
    )
    (violation,) = layers.check(tmp_path)
    assert violation.package == "http_api"
    assert violation.chain == (("http_api.app", 3), ("mining.settings", 1), ("mining.reader", 4))
    assert violation.imported == "pandas.api.types"


def test_relative_imports_and_package_inits_are_followed(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "recommender/query.py": "from .paths import small\n",
            "recommender/paths/__init__.py": "from . import small\n",
            "recommender/paths/small.py": "from ..report import metrics\n",
            "recommender/report.py": "import aiohttp\n",
        },
    )
    (violation,) = layers.check(tmp_path)
    assert (violation.package, violation.forbidden) == ("recommender", "aiohttp")
    assert violation.chain[-1] == ("recommender.report", 1)


def test_importing_a_module_runs_its_packages_init(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "actors/watcher.py": "import mining.light.names\n",
            "mining/light/__init__.py": "import scipy\n",
            "mining/light/names.py": "",
        },
    )
    assert broken(tmp_path) == [("actors", "scipy")]


def test_imports_only_for_the_type_checker_do_not_count(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "actors/frontend.py": (
                "from typing import TYPE_CHECKING\nimport typing\n"
                "if TYPE_CHECKING:\n    from http_api.state import Snapshot\n"
                "if typing.TYPE_CHECKING:\n    import pandas\n"
                "else:\n    import pyarrow\n"
            ),
        },
    )
    assert broken(tmp_path) == [("actors", "pyarrow")]


def test_names_that_only_start_like_a_forbidden_one_pass(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "recommender/index.py": "import pandasql\nimport aiohttp_cors\nimport fimbria\n",
            "client/cli.py": "import actors_extra\n",
        },
    )
    assert layers.check(tmp_path) == []


def test_a_module_outside_the_rules_may_import_anything(tmp_path: Path) -> None:
    tree(tmp_path, {"evaluation/run.py": "import actors\nimport http_api\nimport pandas\n"})
    assert layers.check(tmp_path) == []


def test_the_script_prints_each_broken_rule_and_exits_1(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "actors/frontend.py": "import http_api.state\n",
            "client/recommend.py": "from http_api.encoding import decode\n",
        },
    )
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "check_layers: actors must not import http_api: actors.frontend:1 imports http_api.state",
        "check_layers: client must not import http_api: client.recommend:1 "
        "imports http_api.encoding",
    ]


def test_the_script_exits_0_on_a_clean_tree(tmp_path: Path) -> None:
    tree(tmp_path, {"http_api/app.py": "import actors\n"})
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("check_layers: the import layers hold")
