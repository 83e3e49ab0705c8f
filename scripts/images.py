#!/usr/bin/env python3
"""Build the three container images with podman, and check them for real (`make images`).

`build`: system packages (podman, runc, debootstrap) if missing, a Debian base image made with
debootstrap (kept once built: no image registry is reachable here), a wheelhouse built on the
host (kept while setup.cfg and the pinned versions do not change), then the images.
`check`: `build`, then run the ML image on a fresh volume with the bundled sample, run the API
image on that volume read-only the way the Deployment does, ask it for its probes' paths and a
recommendation, stop it and require a prompt exit 0. The spark image mines the same sample
twice, as `python -m mining` and as a SparkApplication's driver runs it (spark-submit), and
must write the same rules as the ML image. Every step prints its duration.
"""

from __future__ import annotations

import argparse
import contextlib
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
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mining.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from mining.rulesfile import RULES_FILENAME, read_rules
from mining.version import __version__

ROOT = Path(__file__).resolve().parent.parent
VERSION = __version__
BASE_IMAGE = "localhost/playlist-recommender-base:bookworm"
WHEELHOUSE = ROOT / "build" / "wheelhouse"
# pyspark's wheel alone (~460 MB), so that only the spark image's build copies it.
SPARK_WHEELHOUSE = ROOT / "build" / "wheelhouse-spark"
SPARK_WHEELS = ("pyspark", "py4j")
# The project's own wheel, built on the host like pyfim's: the images never get a compiler.
PROJECT_DIST = ROOT / "build" / "dist"
DOCKERFILE = ROOT / "containers" / "Dockerfile"
# The overlay whose images are the ones built here (localhost/...:VERSION).
LOCAL_OVERLAY = ROOT / "manifests" / "overlays" / "local"
# The extras each image installs; the Dockerfile's `pip install` lines name the same.
IMAGE_EXTRAS = {"mining": ("mining", "fast"), "api": ("serve",), "spark": ("spark",)}
TARGETS = tuple(IMAGE_EXTRAS)
# The spark image installs Debian's JRE during its build: the one build that needs the network
# (the host's; never podman's default bridge).
BUILD_NETWORK = {"mining": "none", "api": "none", "spark": "host"}
# Where the SparkApplication finds the job's entry point in the spark image
# (manifests/components/spark/spark-application.yaml, mainApplicationFile).
SPARK_MAIN = "/opt/venv/lib/python3.11/site-packages/mining/__main__.py"
SYSTEM_PACKAGES = ("podman:podman", "runc:runc", "debootstrap:debootstrap")
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


def ensure_base_image() -> None:
    """Make the base image with debootstrap unless it exists already."""
    if podman_ok("image", "exists", BASE_IMAGE):
        print(f"    {BASE_IMAGE} exists, kept")
        return
    with tempfile.TemporaryDirectory(prefix="base-image-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            DEBIAN_MIRROR,
            stdout=subprocess.DEVNULL,
        )
        # Package caches and manuals are dead weight in every image built on top.
        for leftover in ("var/cache/apt", "var/lib/apt/lists", "usr/share/man", "usr/share/info"):
            shutil.rmtree(rootfs / leftover)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run("podman", "import", "-", BASE_IMAGE, stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise SystemExit("images: tar of the debootstrap root failed")


def resolve(extras: tuple[str, ...]) -> list[str]:
    """The pinned dependencies pip picks from the wheelhouse for the project with `extras`."""
    report = output(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--ignore-installed",
        "--no-index",
        "--find-links",
        str(WHEELHOUSE),
        "--find-links",
        str(SPARK_WHEELHOUSE),
        "--report",
        "-",
        f".[{','.join(extras)}]",
    )
    return sorted(
        f"{item['metadata']['name']}=={item['metadata']['version']}"
        for item in json.loads(report)["install"]
        if item["metadata"]["name"] != "playlist-recommender"
    )


def pip_wheel(wheel_dir: Path, *arguments: str) -> None:
    """``pip wheel`` on the host into ``wheel_dir``."""
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheel_dir), *arguments)


def ensure_wheelhouse() -> None:
    """Build every dependency's wheel on the host, pinned to the versions in .venv."""
    constraints = output(
        sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"
    )
    digest = hashlib.sha256()
    for part in ((ROOT / "setup.cfg").read_bytes(), (ROOT / "pyproject.toml").read_bytes()):
        digest.update(part)
    digest.update(constraints.encode())
    stamp = WHEELHOUSE / ".inputs.sha256"
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        print(f"    {WHEELHOUSE.relative_to(ROOT)} is up to date, kept")
        return
    shutil.rmtree(WHEELHOUSE, ignore_errors=True)
    shutil.rmtree(SPARK_WHEELHOUSE, ignore_errors=True)
    WHEELHOUSE.mkdir(parents=True)
    SPARK_WHEELHOUSE.mkdir(parents=True)
    pins = WHEELHOUSE / "constraints.txt"
    pins.write_text(constraints)
    pip_wheel(
        WHEELHOUSE,
        "--constraint",
        str(pins),
        f".[{','.join(sorted({extra for extras in IMAGE_EXTRAS.values() for extra in extras}))}]",
        "setuptools>=68",
        "wheel",
    )
    # The project's own wheel is built by build_project_wheel, from the checked-out sources.
    for own in WHEELHOUSE.glob("playlist_recommender-*.whl"):
        own.unlink()
    for name in SPARK_WHEELS:
        for wheel in WHEELHOUSE.glob(f"{name}-*.whl"):
            wheel.rename(SPARK_WHEELHOUSE / wheel.name)
    for target, extras in IMAGE_EXTRAS.items():
        requirements = WHEELHOUSE / f"requirements-{target}.txt"
        requirements.write_text("\n".join(resolve(extras)) + "\n")
    stamp.write_text(digest.hexdigest())


def build_project_wheel() -> None:
    """The project's wheel from the checked-out sources, with the recommender's compiled path."""
    shutil.rmtree(PROJECT_DIST, ignore_errors=True)
    pip_wheel(PROJECT_DIST, "--no-deps", str(ROOT))
    (wheel,) = PROJECT_DIST.glob("playlist_recommender-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        compiled = [name for name in archive.namelist() if name.startswith("http_api/_smallquery")]
    require(compiled, f"{wheel.name} holds no compiled http_api._smallquery (is gcc installed?)")
    print(f"    {wheel.relative_to(ROOT)}")


def build_image(target: str) -> None:
    """Build one target of the Dockerfile (without network access, but for the spark JRE)."""
    run(
        "podman",
        "build",
        "--format",
        "docker",
        "--network",
        BUILD_NETWORK[target],
        "--target",
        target,
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg",
        f"VERSION={VERSION}",
        "--file",
        str(DOCKERFILE),
        "--tag",
        image_name(target),
        ".",
    )


def build() -> None:
    """Everything up to the tagged images."""
    with step("system packages"):
        run(str(ROOT / "scripts" / "ensure-system-packages"), *SYSTEM_PACKAGES)
    with step("base image"):
        ensure_base_image()
    with step("wheelhouse"):
        ensure_wheelhouse()
    with step("project wheel"):
        build_project_wheel()
    for target in TARGETS:
        with step(f"build {target} image"):
            build_image(target)


def require(condition: object, problem: str) -> None:
    """Stop the check with one line saying what is wrong."""
    if not condition:
        raise SystemExit(f"images: {problem}")


def check_image_config() -> None:
    """The built images run as the numeric user and carry their version and health check."""
    for target in TARGETS:
        (image,) = json.loads(output("podman", "image", "inspect", image_name(target)))
        config = image["Config"]
        print(f"    {image_name(target)}: {image['Size'] / 2**20:.0f} MiB")
        require(config["User"] == "10001:10001", f"{target} runs as {config['User']!r}")
        label = config["Labels"]["org.opencontainers.image.version"]
        require(label == VERSION, f"{target} is labelled version {label}, not {VERSION}")
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
    """The API image holds neither mlxtend nor pandas but the compiled small-query path;
    neither image holds a compiler."""
    probe = (
        "import importlib.util, shutil, sys; "
        "print(' '.join(m for m in sys.argv[1:] if shutil.which(m) or importlib.util.find_spec(m)))"
    )
    compilers = ("gcc", "cc", "g++")
    mining_only = ("mlxtend", "pandas", "sklearn", "scipy", "pyarrow")
    for target, forbidden in (
        ("api", (*compilers, *mining_only, "pyspark", "java")),
        ("mining", (*compilers, "pyspark", "java")),
        ("spark", (*compilers, "mlxtend", "pandas", "sklearn", "scipy", "fim")),
    ):
        found = python_in(target, probe, *forbidden).split()
        require(not found, f"the {target} image contains {found}")
    found = python_in("spark", probe, "java", "pyspark", "pyarrow").split()
    require(found == ["java", "pyspark", "pyarrow"], f"the spark image has only {found}")
    main = python_in("spark", "import mining.__main__ as m; print(m.__file__)").strip()
    require(main == SPARK_MAIN, f"the spark image has the job at {main}, not {SPARK_MAIN}")
    # A recommendation costs ~4 µs of server CPU compiled against ~12 µs in Python.
    probe = "from http_api.recommender import SmallQueryIndex; print(SmallQueryIndex is not None)"
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
    while http("GET", base + "/readyz")[0] != 200:
        if time.monotonic() - start > READY_TIMEOUT_S:
            print(output("podman", "logs", container))
            raise SystemExit(f"images: /readyz not 200 within {READY_TIMEOUT_S} s")
        time.sleep(0.1)
    print(f"    /readyz 200 after {time.monotonic() - start:.2f} s")
    for path in sorted(deployment_probe_paths()):
        status, _ = http("GET", base + path)
        require(status == 200, f"the Deployment probes {path}, which answers {status}")
        print(f"    probe path {path}: 200")
    # podman schedules HEALTHCHECKs with systemd timers (it logs errors where there is no
    # systemd, as here); running it once by hand checks the command itself.
    run("podman", "healthcheck", "run", container)
    songs, expected = strongest_rule(data_dir)
    status, body = http("POST", base + "/api/recommend", {"songs": songs, "limit": 100})
    require(status == 200, f"/api/recommend answered {status}: {body[:200]!r}")
    answer = json.loads(body)
    model_date = read_checkpoint(data_dir / CHECKPOINT_FILENAME).model_date
    require(answer["version"] == VERSION, f"served version {answer['version']}, not {VERSION}")
    require(
        answer["model_date"] == model_date, f"model_date {answer['model_date']} != {model_date}"
    )
    require(expected in answer["songs"], f"{songs} -> {answer['songs']} lacks {expected!r}")
    print(f"    {songs} -> {answer['songs'][:3]}...")


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
    """Build, then run both images the way the manifests do."""
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
