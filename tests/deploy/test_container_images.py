"""The container definitions: hadolint-clean, non-root, exec-form, a health check without curl,
a default build that needs only public images, the package index and the committed files, the
offline build `make images` makes through build arguments, full OCI labels, a build context that
sends only what is copied, and a compose file that builds and runs like the cluster.

`make images` (scripts/images.py) builds and runs the images for real; these are the fast checks.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from http_api.settings import Settings as ApiSettings
from mining.version import __version__
from tests.deploy.deployfiles import REPO, Dockerfile, load_script, venv_tool

TARGETS = {"mining": ["python", "-m", "mining"], "api": ["python", "-m", "http_api"]}
COMPOSE = REPO / "containers" / "compose.yml"
IMAGES_SCRIPT = REPO / "scripts" / "images.py"
# The public bases of a default build: the official Python 3.11 images, named in full so that
# podman (which asks before guessing a registry for a short name) pulls them too.
PUBLIC_BASE = re.compile(r"docker\.io/library/python:3\.11(\.\d+)?-(slim-)?bookworm")
CREATED = "2026-12-05T10:00:00+00:00"


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
    # Multi-stage: the runtime stages start from the runtime base, not from a stage holding the
    # wheels or a compiler, and take nothing but the virtualenv built in another stage.
    assert dockerfile.chain(target)[0].base == "${RUNTIME_IMAGE}"
    copied = [
        arguments
        for arguments in dockerfile.instructions(target, "COPY")
        if not arguments.startswith("--from=")
    ]
    assert copied == []


def needed_stages(dockerfile: Dockerfile, target: str) -> list[str]:
    """Every stage building ``target`` needs: its FROM chain and the stages it copies from."""
    needed: list[str] = []
    pending = [target]
    while pending:
        stage = pending.pop()
        if stage in needed:
            continue
        needed.append(stage)
        base = dockerfile.base(stage)
        pending += [base] if base in dockerfile.stages else []
        pending += [
            match[1]
            for instruction in dockerfile.stages[stage].instructions
            if instruction.keyword == "COPY"
            and (match := re.match(r"--from=(\S+)", instruction.arguments))
        ]
    return needed


def copy_sources(dockerfile: Dockerfile, stage: str, overrides: dict[str, str]) -> list[str]:
    """The build-context paths a stage's COPY instructions read, its ARGs put in."""
    values = dockerfile.args(stage) | overrides
    return [
        dockerfile.substitute(source, values).rstrip("/")
        for instruction in dockerfile.stages[stage].instructions
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from=")
        for source in instruction.arguments.split()[:-1]
    ]


def tracked(path: str) -> list[str]:
    """The files git tracks at ``path`` (a file or a directory): what a clone holds there."""
    result = subprocess.run(
        ["git", "ls-files", "--", path], cwd=REPO, capture_output=True, text=True, check=True
    )
    return result.stdout.split()


@pytest.mark.parametrize("target", TARGETS)
def test_the_default_build_needs_only_public_images_the_index_and_a_clone(
    dockerfile: Dockerfile, target: str
) -> None:
    stages = needed_stages(dockerfile, target)
    bases = {dockerfile.base(stage) for stage in stages} - set(dockerfile.stages) - {"scratch"}
    assert bases, stages
    for base in bases:
        assert PUBLIC_BASE.fullmatch(base), base
        assert not base.startswith("localhost/")
    # A compiler only where the project is built; the image itself starts from the slim one.
    assert "-slim-" in dockerfile.base(dockerfile.chain(target)[0].name)
    assert "-slim-" not in dockerfile.base("builder")
    for stage in stages:
        for source in copy_sources(dockerfile, stage, {}):
            assert not source.startswith("build/"), (stage, source)
            files = tracked(source)
            assert files, f"{stage} copies {source}, which a clone does not have"
            # The default wheelhouse holds no wheel: every package comes from the index.
            assert not [name for name in files if name.endswith(".whl")], source
    builder = dockerfile.args("builder")
    assert builder["PIP_NO_INDEX"] == "0"
    assert builder["PIP_INDEX_URL"] == "https://pypi.org/simple"


def test_make_images_builds_offline_through_build_arguments_only(dockerfile: Dockerfile) -> None:
    images = load_script(IMAGES_SCRIPT)
    arguments = images.offline_build_args()
    declared = set(dockerfile.global_args)
    for stage in dockerfile.stages:
        declared |= set(dockerfile.args(stage))
    # podman warns about an undeclared build argument, and ignores it.
    assert set(arguments) <= declared
    assert arguments["BUILD_IMAGE"].startswith("localhost/")
    assert arguments["RUNTIME_IMAGE"].startswith("localhost/")
    assert arguments["PIP_NO_INDEX"] == "1"
    assert REPO / arguments["WHEELHOUSE"] == images.WHEELHOUSE
    assert arguments["VERSION"] == __version__
    # Nothing else differs from the default build: the same stages copy the same files.
    builder_sources = copy_sources(dockerfile, "builder", arguments)
    assert arguments["WHEELHOUSE"] in builder_sources
    assert set(builder_sources) - {arguments["WHEELHOUSE"]} == set(
        copy_sources(dockerfile, "builder", {})
    ) - {dockerfile.args("builder")["WHEELHOUSE"]}


@pytest.mark.parametrize("target", TARGETS)
def test_images_carry_the_oci_labels(dockerfile: Dockerfile, target: str) -> None:
    images = load_script(IMAGES_SCRIPT)
    labels = dockerfile.labels(target)
    # What only a build knows comes with --label: the commit, the build time, the remote.
    added = images.build_labels(CREATED)
    assert set(labels) | set(added) == set(images.OCI_LABELS)
    assert not set(labels) & set(added)
    prefix = "org.opencontainers.image."
    assert added[prefix + "created"] == CREATED
    assert labels[prefix + "title"] == f"playlist-recommender-{target}"
    assert labels[prefix + "description"].startswith("The ")
    with (REPO / "pyproject.toml").open("rb") as file:
        license_expression = tomllib.load(file)["project"]["license"]
    assert labels[prefix + "licenses"] == license_expression
    assert labels[prefix + "version"] == "${VERSION}"
    assert dockerfile.args("runtime")["VERSION"] == __version__
    assert labels[prefix + "base.name"] == "${RUNTIME_IMAGE}"
    assert dockerfile.args("runtime")["RUNTIME_IMAGE"] == dockerfile.global_args["RUNTIME_IMAGE"]


def test_the_revision_label_names_the_commit_and_the_source_carries_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = load_script(IMAGES_SCRIPT)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert images.build_labels(CREATED)["org.opencontainers.image.revision"].startswith(head)
    clone = tmp_path / "clone"
    subprocess.run(["git", "init", "--quiet", str(clone)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(clone),
            "remote",
            "add",
            "origin",
            "https://user:token@git.example.com/p.git",
        ],
        check=True,
    )
    monkeypatch.setattr(images, "ROOT", clone)
    assert images.source_url() == "https://git.example.com/p.git"


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
    default: dict[str, str] = {}
    offline = load_script(IMAGES_SCRIPT).offline_build_args()
    sources = [
        source
        for stage in dockerfile.stages
        for overrides in (default, offline)
        for source in copy_sources(dockerfile, stage, overrides)
    ]
    assert sources
    assert "build/wheelhouse" in sources
    for source in sources:
        # What a clone holds there, or the wheelhouse `make images` fills.
        for name in tracked(source) or [source]:
            assert not dockerignored(name, patterns), name
    for private in (".venv/bin/python", ".git/config", "ml-data/rules.cbor", "tests/deploy"):
        assert dockerignored(private, patterns), private
    assert dockerignored("mining/__pycache__/job.cpython-311.pyc", patterns)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """containers/compose.yml, parsed."""
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_builds_each_service_from_its_target_by_default(
    compose: dict[str, Any], dockerfile: Dockerfile
) -> None:
    images = load_script(IMAGES_SCRIPT)
    services = compose["services"]
    assert set(services) == set(TARGETS)
    for target, service in services.items():
        build = service["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).resolve() == dockerfile.path
        assert build["target"] == target
        # The default build: no build argument points it at a local base or wheelhouse.
        assert "args" not in build
        # The name `make images-build` tags, so an offline build is used as it is.
        assert service["image"] == images.image_name(target)


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


def test_the_images_build_every_package_and_file_pip_install_builds(dockerfile: Dockerfile) -> None:
    # The image's distribution is the one `pip install .` makes: every package pyproject.toml
    # includes (each console script's module among them) and the files the build reads.
    with (REPO / "pyproject.toml").open("rb") as file:
        setuptools = tomllib.load(file)["tool"]["setuptools"]
    patterns = setuptools["packages"]["find"]["include"]
    packages = {
        path.parent.name
        for path in REPO.glob("*/__init__.py")
        if any(fnmatch.fnmatch(path.parent.name, pattern) for pattern in patterns)
    }
    copied = set(copy_sources(dockerfile, "sources", {}))
    assert packages <= copied, packages - copied
    assert {"pyproject.toml", "setup.py", "README.md", "LICENSE"} <= copied
