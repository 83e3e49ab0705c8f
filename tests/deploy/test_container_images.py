"""The container definitions: hadolint-clean, non-root, exec-form, a health check without curl,
a build context that sends only what is copied, and a compose file that runs like the cluster.

`make images` (scripts/images.py) builds and runs the images for real; these are the fast checks.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from http_api.settings import Settings as ApiSettings
from mining.version import __version__
from tests.deploy.deployfiles import REPO, Dockerfile, venv_tool

TARGETS = {"mining": ["python", "-m", "mining"], "api": ["python", "-m", "http_api"]}
COMPOSE = REPO / "containers" / "compose.yml"


@pytest.mark.parametrize("path", sorted((REPO / "containers").glob("Dockerfile*")), ids=str)
def test_hadolint_passes(path: Path) -> None:
    result = subprocess.run(
        [venv_tool("hadolint"), str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_images_run_the_module_as_a_numeric_non_root_user(
    dockerfile: Dockerfile, target: str
) -> None:
    assert dockerfile.exec_form(target, "ENTRYPOINT") == TARGETS[target]
    uid, gid = dockerfile.instructions(target, "USER")[-1].split(":")
    assert int(uid) > 0
    assert int(gid) > 0
    # Multi-stage: the runtime stages start from the base, not from a stage holding the wheels,
    # and take nothing but the virtualenv built in another stage.
    assert dockerfile.chain(target)[0].base == "${BASE_IMAGE}"
    copied = [
        arguments
        for arguments in dockerfile.instructions(target, "COPY")
        if not arguments.startswith("--from=")
    ]
    assert copied == []


def test_api_image_listens_on_3000_on_every_interface(dockerfile: Dockerfile) -> None:
    settings = ApiSettings.from_env(dockerfile.env("api"))
    assert settings.host == "0.0.0.0"
    assert settings.port == 3000
    assert dockerfile.instructions("api", "EXPOSE") == [str(settings.port)]


def test_api_health_check_calls_healthz_with_python_alone(dockerfile: Dockerfile) -> None:
    (healthcheck,) = dockerfile.instructions("api", "HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    words = json.loads(command)
    assert words[:2] == ["python", "-c"]
    assert "/healthz" in words[2]
    assert "os.environ['PORT']" in words[2]
    assert not {"curl", "wget"} & set(" ".join(words).split())


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `path` out (last matching pattern wins, as Docker's)."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(prefix, glob) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_private(
    dockerfile: Dockerfile,
) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        source.rstrip("/")
        for stage in dockerfile.stages.values()
        for instruction in stage.instructions
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from=")
        for source in instruction.arguments.split()[:-1]
    ]
    assert sources
    for source in sources:
        path = REPO / source
        files = [f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
        files = files if path.is_dir() else [path]
        for file in files:
            name = file.relative_to(REPO).as_posix()
            assert not dockerignored(name, patterns), name
    for private in (".venv/bin/python", ".git/config", "ml-data/rules.cbor", "tests/deploy"):
        assert dockerignored(private, patterns), private
    assert dockerignored("mining/__pycache__/job.cpython-311.pyc", patterns)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """containers/compose.yml, parsed."""
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_runs_the_built_images_on_one_shared_volume(
    compose: dict[str, Any], dockerfile: Dockerfile
) -> None:
    services = compose["services"]
    assert set(services) == set(TARGETS)
    for target, service in services.items():
        assert service["image"] == f"localhost/playlist-recommender-{target}:{__version__}"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert service["tmpfs"] == [dockerfile.env(target)["HOME"]]
    (volume,) = compose["volumes"]
    data_dir = dockerfile.env("mining")["DATA_DIR"]
    assert services["mining"]["volumes"] == [f"{volume}:{data_dir}"]
    assert services["api"]["volumes"] == [f"{volume}:{data_dir}:ro"]


def test_compose_api_answers_on_the_usual_port_and_waits_for_nothing(
    compose: dict[str, Any], dockerfile: Dockerfile
) -> None:
    api = compose["services"]["api"]
    settings = ApiSettings.from_env(dockerfile.env("api"))
    # Host side: the port `python -m http_api` uses outside a container, loopback only.
    assert api["ports"] == [f"127.0.0.1:{ApiSettings().port}:{settings.port}"]
    # It defers requests until the mining service has written rules: no start order needed.
    assert "depends_on" not in api
    grace = int(api["stop_grace_period"].removesuffix("s"))
    assert grace > settings.drain_seconds + settings.shutdown_timeout_seconds
