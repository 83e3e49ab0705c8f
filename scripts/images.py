#!/usr/bin/env python3
"""Build the three container images with podman, offline, and check them for real (`make images`).

`build`: system packages (podman, runc, debootstrap) if missing, two Debian bases made with
debootstrap (kept once built: no image registry is reachable here), a wheelhouse of the versions
constraints.txt pins, built on the host (kept while constraints.txt and pyproject.toml do not
change), then the images from containers/Dockerfile with the build arguments of an offline
build: the local bases instead of the public Python images, the wheelhouse instead of the
package index.
`check`: `build`, then run the ML image on a fresh volume with the bundled sample, run the API
image on that volume read-only the way the Deployment does, ask it for its probes' paths and a
recommendation, stop it and require a prompt exit 0. The spark image mines the same sample
twice, as `python -m mining` and as a SparkApplication's driver runs it (spark-submit), and
must write the same rules as the ML image. Every step prints its duration.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import yaml

from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, read_checkpoint, write_checkpoint
from mining.rulesfile import RULES_FILENAME, read_rules, write_rules
from mining.version import __version__

ROOT = Path(__file__).resolve().parent.parent
VERSION = __version__
# Debian bookworm roots standing in for the public Python images (python:3.11-bookworm and
# python:3.11-slim-bookworm): Debian's python3 is 3.11 too, at /usr/bin in both, so the build
# stage's virtualenv runs in the runtime image. Only the build base has a compiler.
RUNTIME_BASE = "localhost/playlist-recommender-base:bookworm"
BUILD_BASE = "localhost/playlist-recommender-build-base:bookworm"
BASE_PACKAGES = {
    RUNTIME_BASE: ("python3", "python3-venv", "ca-certificates"),
    BUILD_BASE: ("python3", "python3-venv", "python3-dev", "gcc", "libc6-dev", "ca-certificates"),
}
CONSTRAINTS = ROOT / "constraints.txt"
WHEELHOUSE = ROOT / "build" / "wheelhouse"
DOCKERFILE = ROOT / "containers" / "Dockerfile"
# The overlay whose images are the ones built here (localhost/...:VERSION).
LOCAL_OVERLAY = ROOT / "manifests" / "overlays" / "local"
# The extras the images install between them (the Dockerfile's `pip install` lines).
IMAGE_EXTRAS = ("mining", "fast", "serve", "spark")
TARGETS = ("mining", "api", "spark")
# The spark image installs Debian's JRE during its build: the one build that needs the network
# (the host's; never podman's default bridge).
BUILD_NETWORK = {"mining": "none", "api": "none", "spark": "host"}
# Where the SparkApplication finds the job's entry point in the spark image
# (manifests/components/spark/spark-application.yaml, mainApplicationFile).
SPARK_MAIN = "/opt/venv/lib/python3.11/site-packages/mining/__main__.py"
SYSTEM_PACKAGES = ("podman:podman", "runc:runc", "debootstrap:debootstrap", "git:git")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Bounds of the run check, generous on a 2-core machine: the sample mines in seconds.
MINING_TIMEOUT_S = 600
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30

timings: list[tuple[str, float]] = []


def image_name(target: str) -> str:
    """Local name of the image built from `target` of the Dockerfile."""
    return f"localhost/playlist-recommender-{target}:{VERSION}"


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Time one step, print it, and keep it for the summary."""
    print(f"==> {name}", flush=True)
    start = time.monotonic()
    yield
    elapsed = time.monotonic() - start
    timings.append((name, elapsed))
    print(f"    {name}: {elapsed:.1f} s", flush=True)


def run(*cmd: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; a failure stops the script."""
    print("    $ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=True, text=True, **kwargs)


def output(*cmd: str) -> str:
    """Run a command and return its standard output."""
    return run(*cmd, stdout=subprocess.PIPE).stdout


def podman_ok(*args: str) -> bool:
    """Whether a podman query command succeeds."""
    return subprocess.run(["podman", *args], capture_output=True, check=False).returncode == 0


def ensure_base_image(name: str) -> None:
    """Make the base image ``name`` with debootstrap unless it exists already."""
    if podman_ok("image", "exists", name):
        print(f"    {name} exists, kept")
        return
    with tempfile.TemporaryDirectory(prefix="base-image-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            "debootstrap",
            "--variant=minbase",
            "--include=" + ",".join(BASE_PACKAGES[name]),
            "bookworm",
            str(rootfs),
            DEBIAN_MIRROR,
            stdout=subprocess.DEVNULL,
        )
        # Package caches and manuals are dead weight in every image built on top.
        for leftover in ("var/cache/apt", "var/lib/apt/lists", "usr/share/man", "usr/share/info"):
            shutil.rmtree(rootfs / leftover)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run("podman", "import", "-", name, stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise SystemExit("images: tar of the debootstrap root failed")


def ensure_wheelhouse() -> None:
    """Build a wheel of every package constraints.txt pins, on the host, for the offline build."""
    digest = hashlib.sha256()
    for path in (CONSTRAINTS, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    stamp = WHEELHOUSE / ".inputs.sha256"
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        print(f"    {WHEELHOUSE.relative_to(ROOT)} is up to date, kept")
        return
    shutil.rmtree(WHEELHOUSE, ignore_errors=True)
    WHEELHOUSE.mkdir(parents=True)
    requirements = output(
        sys.executable, str(ROOT / "containers" / "requirements.py"), "--build", *IMAGE_EXTRAS
    ).splitlines()
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--wheel-dir",
        str(WHEELHOUSE),
        "--constraint",
        str(CONSTRAINTS),
        *requirements,
    )
    stamp.write_text(digest.hexdigest())


def git(*arguments: str) -> str:
    """A git command's output in the checkout, stripped ('' when git fails)."""
    result = subprocess.run(
        ["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def source_url() -> str:
    """The checkout's origin remote, without any user name or password in it ('' if none)."""
    url = git("remote", "get-url", "origin")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def offline_build_args() -> dict[str, str]:
    """The Dockerfile's build arguments for a build that reaches neither a registry nor PyPI."""
    return {
        "BUILD_IMAGE": BUILD_BASE,
        "RUNTIME_IMAGE": RUNTIME_BASE,
        "WHEELHOUSE": WHEELHOUSE.relative_to(ROOT).as_posix(),
        "PIP_NO_INDEX": "1",
        "VERSION": VERSION,
    }


def build_labels(created: str) -> dict[str, str]:
    """The labels only a build knows: the commit (with -dirty when tracked files are modified),
    the build time and where the source lives."""
    revision = git("rev-parse", "HEAD")
    if revision and git("status", "--porcelain", "--untracked-files=no"):
        revision += "-dirty"
    return {
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.source": source_url(),
    }


def build_image(target: str, labels: dict[str, str]) -> None:
    """Build one target of the Dockerfile without network access (but for the spark JRE), then
    put ``labels`` on it in a build of their own.

    Not with ``--label``: podman 4.3 answers a build whose every step is cached with the cached
    image, labels included, so a commit that changed only the docs got the previous build's
    revision and time. A LABEL line holding the values is a step whose cache key they are.
    """
    arguments = [f"--build-arg={name}={value}" for name, value in offline_build_args().items()]
    with tempfile.TemporaryDirectory(prefix="image-labels-") as tmp:
        image_id = Path(tmp) / "image-id"
        podman_build(
            BUILD_NETWORK[target],
            "--target",
            target,
            *arguments,
            "--iidfile",
            str(image_id),
            "--file",
            str(DOCKERFILE),
            ".",
        )
        built = image_id.read_text().strip().removeprefix("sha256:")
        given = " ".join(f"{name}={json.dumps(value)}" for name, value in labels.items() if value)
        containerfile = Path(tmp) / "Containerfile"
        containerfile.write_text(f"FROM {built}\nLABEL {given}\n")
        previous = podman_image_id(image_name(target))
        podman_build("none", "--file", str(containerfile), "--tag", image_name(target), tmp)
    # The previous labelled image (a few hundred bytes of configuration over the same layers)
    # would stay behind untagged; one still used by a container stays.
    if previous and previous != podman_image_id(image_name(target)):
        subprocess.run(["podman", "rmi", previous], capture_output=True, check=False)


def podman_build(network: str, *arguments: str) -> None:
    """``podman build`` on ``network`` in the docker format: OCI's drops HEALTHCHECK."""
    run("podman", "build", "--format", "docker", "--network", network, *arguments)


def podman_image_id(name: str) -> str:
    """The ID of the image tagged ``name`` ('' if none)."""
    found = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() if found.returncode == 0 else ""


def build() -> None:
    """Everything up to two tagged images."""
    with step("system packages"):
        run(str(ROOT / "scripts" / "ensure-system-packages"), *SYSTEM_PACKAGES)
    for base in (RUNTIME_BASE, BUILD_BASE):
        with step(f"base image {base}"):
            ensure_base_image(base)
    with step("wheelhouse"):
        ensure_wheelhouse()
    labels = build_labels(datetime.now(UTC).isoformat(timespec="seconds"))
    for target in TARGETS:
        with step(f"build {target} image"):
            build_image(target, labels)


def require(condition: object, problem: str) -> None:
    """Stop the check with one line saying what is wrong."""
    if not condition:
        raise SystemExit(f"images: {problem}")


# The labels every image carries (OCI image spec, "Pre-Defined Annotation Keys").
OCI_LABELS = tuple(
    f"org.opencontainers.image.{key}"
    for key in (
        "title",
        "description",
        "version",
        "revision",
        "created",
        "source",
        "licenses",
        "base.name",
    )
)


def check_image_config() -> None:
    """The built images run as the numeric user and carry their labels and health check."""
    for target in TARGETS:
        (image,) = json.loads(output("podman", "image", "inspect", image_name(target)))
        config = image["Config"]
        print(f"    {image_name(target)}: {image['Size'] / 2**20:.0f} MiB")
        require(config["User"] == "10001:10001", f"{target} runs as {config['User']!r}")
        labels = config["Labels"]
        required = set(OCI_LABELS)
        if not source_url():
            # A clone without an origin remote has no source URL to give.
            required.discard("org.opencontainers.image.source")
            print("    no origin remote: no source label")
        require(required <= set(labels), f"{target} lacks the labels {required - set(labels)}")
        expected = {
            "title": f"playlist-recommender-{target}",
            "version": VERSION,
            "revision": git("rev-parse", "HEAD"),
            "base.name": RUNTIME_BASE,
            "licenses": "MIT",
        }
        for key, value in expected.items():
            label = labels[f"org.opencontainers.image.{key}"]
            require(label.startswith(value), f"{target} is labelled {key} {label!r}, not {value}")
        created = datetime.fromisoformat(labels["org.opencontainers.image.created"])
        require(created.tzinfo is not None, f"{target}'s created label has no time zone")
        facts = ("version", "revision", "created", "source")
        print(
            "    "
            + ", ".join(f"{key} {labels.get(f'org.opencontainers.image.{key}')!r}" for key in facts)
        )
    (api,) = json.loads(output("podman", "image", "inspect", image_name("api")))
    # Only the docker image format keeps HEALTHCHECK; OCI drops it without a word.
    require(api.get("Healthcheck"), "the api image lost its HEALTHCHECK")


def python_in(target: str, code: str, *arguments: str) -> str:
    """What ``python -c code arguments`` prints in the ``target`` image, without network."""
    return output(
        "podman",
        "run",
        "--rm",
        "--network=none",
        "--no-healthcheck",
        "--entrypoint",
        "python",
        image_name(target),
        "-c",
        code,
        *arguments,
    )


def check_image_contents() -> None:
    """The API image holds neither mlxtend nor pandas but the compiled small-query path; the
    spark image holds Java, pyspark and the job where the SparkApplication runs it; no image
    holds a compiler."""
    probe = (
        "import importlib.util, shutil, sys; "
        "print(' '.join(m for m in sys.argv[1:] if shutil.which(m) or importlib.util.find_spec(m)))"
    )
    compilers = ("gcc", "cc", "g++")
    mining_only = ("mlxtend", "pandas", "sklearn", "scipy", "pyarrow")
    for target, forbidden in (
        ("api", (*compilers, *mining_only, "pyspark", "java")),
        ("mining", (*compilers, "pyspark", "java")),
        ("spark", (*compilers, "mlxtend", "pandas", "sklearn")),
    ):
        found = python_in(target, probe, *forbidden).split()
        require(not found, f"the {target} image contains {found}")
    found = python_in("spark", probe, "java", "pyspark", "pyarrow", "fim").split()
    require(found == ["java", "pyspark", "pyarrow", "fim"], f"the spark image has only {found}")
    main = python_in("spark", "import mining.__main__ as m; print(m.__file__)").strip()
    require(main == SPARK_MAIN, f"the spark image has the job at {main}, not {SPARK_MAIN}")
    # The server answers small queries faster compiled (benchmarks/serve_throughput.py --split).
    probe = "from recommender.compiled import SmallQueryIndex; print(SmallQueryIndex is not None)"
    compiled = python_in("api", probe).strip()
    require(compiled == "True", "the api image lacks the compiled small-query path")


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: object = None) -> tuple[int, bytes]:
    """One HTTP request; returns the status and body, whatever the status."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def deployment_probe_paths() -> set[str]:
    """The HTTP paths the Deployment's probes call, from the rendered local overlay."""
    for obj in yaml.safe_load_all(output("kubectl", "kustomize", str(LOCAL_OVERLAY))):
        if obj["kind"] == "Deployment":
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            return {
                container[probe]["httpGet"]["path"]
                for probe in ("startupProbe", "readinessProbe", "livenessProbe")
            }
    raise SystemExit("images: the local overlay renders no Deployment")


def strongest_rule(data_dir: Path) -> tuple[list[str], str]:
    """Antecedent and consequent of the most confident rule the ML image wrote."""
    rules = read_rules(data_dir / RULES_FILENAME)
    antecedent, consequent, _, _ = max(rules.iter_rules(), key=lambda r: (r[2] / r[3], r[2]))
    return list(antecedent), consequent


def run_mining(volume: str, target: str = "mining", *arguments: str, env: str = "") -> None:
    """Run an ML image like the Job: read-only root, no capabilities, volume read-write."""
    run(
        "podman",
        "run",
        "--rm",
        "--network=none",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        *(["--env", env] if env else []),
        "--volume",
        f"{volume}:/data",
        image_name(target),
        *arguments,
        timeout=MINING_TIMEOUT_S,
    )


def volume_path(volume: str) -> Path:
    """Where a podman volume's files are on the host."""
    return Path(
        output("podman", "volume", "inspect", "--format", "{{.Mountpoint}}", volume).strip()
    )


def check_spark(mining_data: Path) -> None:
    """The spark image mines the sample into the same rules as the ML image, both ways it runs."""
    reference = read_rules(mining_data / RULES_FILENAME)
    for way, arguments, env in (
        ("python -m mining, local[2]", (), "SPARK_MASTER=local[2]"),
        (
            "driver of a SparkApplication (spark-submit)",
            ("driver", "--master", "local[2]", f"local://{SPARK_MAIN}"),
            "SPARK_DRIVER_BIND_ADDRESS=127.0.0.1",
        ),
    ):
        volume = f"playlist-recommender-check-spark-{os.getpid()}"
        run("podman", "volume", "create", volume, stdout=subprocess.DEVNULL)
        try:
            with step(f"spark image: {way}"):
                run_mining(volume, "spark", *arguments, env=env)
            rules = read_rules(volume_path(volume) / RULES_FILENAME)
            require(rules.header.engine == "spark", f"{way}: mined by {rules.header.engine}")
            require(
                rules.same_rules(reference) and rules.song_names == reference.song_names,
                f"{way}: the spark image's rules differ from the mining image's",
            )
            print(f"    {rules.header.rule_count} rules, the same as the mining image's")
        finally:
            subprocess.run(
                ["podman", "volume", "rm", "--force", volume], capture_output=True, check=False
            )


def start_api(container: str, volume: str, port: int) -> None:
    """Run the API image like the Deployment: read-only root and volume, no capabilities."""
    run(
        "podman",
        "run",
        "--detach",
        "--name",
        container,
        "--network=host",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--env",
        "HOST=127.0.0.1",
        "--env",
        f"PORT={port}",
        "--volume",
        f"{volume}:/data:ro",
        image_name("api"),
        stdout=subprocess.DEVNULL,
    )


def check_api(container: str, port: int, data_dir: Path) -> None:
    """Readiness, the probes' paths, the image's health check and one recommendation."""
    base = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    while http("GET", base + "/readyz")[0] != HTTPStatus.OK:
        if time.monotonic() - start > READY_TIMEOUT_S:
            print(output("podman", "logs", container))
            raise SystemExit(f"images: /readyz not 200 within {READY_TIMEOUT_S} s")
        time.sleep(0.1)
    print(f"    /readyz 200 after {time.monotonic() - start:.2f} s")
    for path in sorted(deployment_probe_paths()):
        status, _ = http("GET", base + path)
        require(status == HTTPStatus.OK, f"the Deployment probes {path}, which answers {status}")
        print(f"    probe path {path}: 200")
    # podman schedules HEALTHCHECKs with systemd timers (it logs errors where there is no
    # systemd, as here); running it once by hand checks the command itself.
    run("podman", "healthcheck", "run", container)
    songs, expected = strongest_rule(data_dir)
    status, body = http("POST", base + "/api/recommend", {"songs": songs, "limit": 100})
    require(status == HTTPStatus.OK, f"/api/recommend answered {status}: {body[:200]!r}")
    answer = json.loads(body)
    model_date = read_checkpoint(data_dir / CHECKPOINT_FILENAME).model_date
    require(answer["version"] == VERSION, f"served version {answer['version']}, not {VERSION}")
    require(
        answer["model_date"] == model_date, f"model_date {answer['model_date']} != {model_date}"
    )
    require(expected in answer["songs"], f"{songs} -> {answer['songs']} lacks {expected!r}")
    print(f"    {songs} -> {answer['songs'][:3]}...")


def check_reload(container: str, port: int, data_dir: Path) -> None:
    """New rules while serving (the same ones under a new generation, written as the miner
    commits them): served, and loaded at idle priority inside the image's sandbox."""
    ruleset = read_rules(data_dir / RULES_FILENAME)
    header = dataclasses.replace(ruleset.header, generated_ns=time.time_ns())
    write_rules(data_dir / RULES_FILENAME, dataclasses.replace(ruleset, header=header))
    checkpoint = Checkpoint(header.package_version, header.dataset_url, header.generated_ns)
    write_checkpoint(data_dir / CHECKPOINT_FILENAME, checkpoint)
    songs, _ = strongest_rule(data_dir)
    start = time.monotonic()
    while True:
        status, body = http("POST", f"http://127.0.0.1:{port}/api/recommend", {"songs": songs})
        if status == HTTPStatus.OK and json.loads(body)["model_date"] == checkpoint.model_date:
            break
        if time.monotonic() - start > READY_TIMEOUT_S:
            print(output("podman", "logs", container))
            raise SystemExit(f"images: the new rules were not served within {READY_TIMEOUT_S} s")
        time.sleep(0.1)
    print(f"    new rules served after {time.monotonic() - start:.2f} s")
    logs = subprocess.run(["podman", "logs", container], capture_output=True, text=True, check=True)
    # BackgroundLoads warns once when the sandbox refuses SCHED_IDLE.
    require(
        "SCHED_IDLE is not available" not in logs.stdout + logs.stderr,
        f"the reload ran at normal priority:\n{logs.stderr}",
    )
    print("    reloaded at idle priority")


def stop_api(container: str) -> None:
    """SIGTERM through `podman stop`: the server must drain and exit 0 well before SIGKILL."""
    start = time.monotonic()
    run("podman", "stop", "--time", str(STOP_TIMEOUT_S), container, stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    (inspected,) = json.loads(output("podman", "inspect", container))
    exit_code = inspected["State"]["ExitCode"]
    print(f"    stopped in {elapsed:.1f} s, exit code {exit_code}")
    require(exit_code == 0, f"the server exited with {exit_code}")
    require(elapsed < STOP_TIMEOUT_S, "podman had to kill the server")
    logs = subprocess.run(["podman", "logs", container], capture_output=True, text=True, check=True)
    require("Traceback" not in logs.stdout + logs.stderr, f"the server logged:\n{logs.stderr}")


def check() -> None:
    """Build, then run the images the way the manifests do."""
    build()
    with step("image configuration"):
        check_image_config()
    with step("image contents"):
        check_image_contents()
    volume = f"playlist-recommender-check-{os.getpid()}"
    container = f"playlist-recommender-api-check-{os.getpid()}"
    run("podman", "volume", "create", volume, stdout=subprocess.DEVNULL)
    try:
        data_dir = volume_path(volume)
        with step("mining run (bundled sample)"):
            run_mining(volume)
        checkpoint = read_checkpoint(data_dir / CHECKPOINT_FILENAME)
        print(f"    {checkpoint.to_line().strip()}")
        with step("mining run again (unchanged: skips)"):
            run_mining(volume)
        again = read_checkpoint(data_dir / CHECKPOINT_FILENAME)
        require(again == checkpoint, "an unchanged dataset was mined again")
        check_spark(data_dir)
        with step("api start, ready, requests"):
            port = free_port()
            start_api(container, volume, port)
            check_api(container, port, data_dir)
        with step("api reload (new rules, idle priority)"):
            check_reload(container, port, data_dir)
        with step("api stop (SIGTERM, drain, exit)"):
            stop_api(container)
    finally:
        subprocess.run(["podman", "rm", "--force", container], capture_output=True, check=False)
        subprocess.run(
            ["podman", "volume", "rm", "--force", volume], capture_output=True, check=False
        )


def main() -> None:
    """Parse the command line and run `build` or `check`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("build", "check"))
    command = parser.parse_args().command
    os.environ["CONTAINERS_CONF"] = str(ROOT / "containers" / "containers.conf")
    started = time.monotonic()
    try:
        if command == "build":
            build()
        else:
            check()
    finally:
        print("\nstep timings:")
        for name, elapsed in timings:
            print(f"  {elapsed:7.1f} s  {name}")
        print(f"  {time.monotonic() - started:7.1f} s  total")
    print(f"\nimages {command} ok: {' '.join(image_name(target) for target in TARGETS)}")


if __name__ == "__main__":
    main()
