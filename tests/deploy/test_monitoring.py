"""The monitoring component (manifests/components/monitoring): a ServiceMonitor and the alerts,
valid for the Prometheus Operator's CRDs, rendered into an overlay by kustomize, checked and
unit-tested by promtool, and a real Prometheus scraping a real server until the alerts fire.

promtool and prometheus come from Debian's ``prometheus`` package, which ``make test``
installs (``TEST_SYSTEM_PACKAGES`` in the Makefile).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from http_api.settings import Settings
from mining.atomicfile import atomic_write_bytes
from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, write_checkpoint
from mining.rulesfile import RULES_FILENAME
from tests.deploy.deployfiles import (
    MANIFESTS,
    SCHEMAS,
    Rendered,
    crd_validator,
    schema_errors,
)
from tests.helpers.gate import Gate
from tests.helpers.openapi import checked_app
from tests.helpers.processes import REPO, free_port, terminate
from tests.helpers.rules import read_model, small_ruleset, write_model

COMPONENT = MANIFESTS / "components" / "monitoring"
PRODUCTION = MANIFESTS / "overlays" / "production"
ALERTS_TEST = Path(__file__).with_name("alerts_test.yaml")
DOCS = REPO / "docs" / "monitoring.md"
ALERTS = {
    "PlaylistRecommenderNoReadyPods": "critical",
    "PlaylistRecommenderErrorRatioHigh": "critical",
    "PlaylistRecommenderLatencyHigh": "warning",
    "PlaylistRecommenderReloadFailing": "warning",
    "PlaylistRecommenderModelStale": "warning",
}
JOB = "playlist-recommender"


def tool(name: str) -> str:
    """A command of Debian's prometheus package."""
    found = shutil.which(name)
    assert found, f"{name} is missing: make test installs it (Debian package prometheus)"
    return found


def with_monitoring(overlay: Path, **additions: list[Any]) -> Rendered:
    """The production overlay with the component enabled, as the component's comment says: its
    kustomization.yaml, copied to ``overlay`` (paths adjusted) with ``components`` and any
    ``additions`` (more ``labels``, ``patches``...) appended."""
    kustomization = yaml.safe_load((PRODUCTION / "kustomization.yaml").read_text())
    kustomization["resources"] = [
        os.path.relpath(PRODUCTION / resource, overlay) for resource in kustomization["resources"]
    ]
    kustomization["components"] = [os.path.relpath(COMPONENT, overlay)]
    for key, values in additions.items():
        kustomization[key] = [*kustomization.get(key, []), *values]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return Rendered(overlay)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The production overlay with the monitoring component."""
    return with_monitoring(tmp_path_factory.mktemp("with-monitoring"))


def documented(first_key: str) -> list[Any]:
    """The YAML example of docs/monitoring.md that starts with ``first_key:``, its value."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    (block,) = [block for block in blocks if block.startswith(f"{first_key}:")]
    value: list[Any] = yaml.safe_load(block)[first_key]
    return value


def rules_of(rendered: Rendered) -> list[dict[str, Any]]:
    """The alerting rules of the rendered PrometheusRule."""
    (group,) = rendered.one("PrometheusRule")["spec"]["groups"]
    return list(group["rules"])


def write_rule_file(rendered: Rendered, path: Path, **overrides: str) -> Path:
    """The PrometheusRule's spec as a plain Prometheus rule file (``overrides``: fields set on
    every rule, e.g. a short ``for``)."""
    spec = copy.deepcopy(rendered.one("PrometheusRule")["spec"])
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.update(overrides)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_component_adds_a_servicemonitor_and_rules_in_the_apps_namespace(
    monitored: Rendered,
) -> None:
    kinds = sorted(obj["kind"] for obj in monitored.objects)
    assert kinds == sorted(
        [
            *(obj["kind"] for obj in Rendered(PRODUCTION).objects),
            "PrometheusRule",
            "ServiceMonitor",
        ]
    )
    assert {obj["metadata"]["namespace"] for obj in monitored.objects} == {"playlist-recommender"}


@pytest.mark.parametrize(
    ("kind", "crd", "mistake"),
    [
        ("ServiceMonitor", "servicemonitors", ("spec", "endpoints", 0, "intervl")),
        ("PrometheusRule", "prometheusrules", ("spec", "groups", 0, "rules", 0, "fore")),
    ],
)
def test_monitoring_objects_are_valid_for_the_operators_crds(
    monitored: Rendered, kind: str, crd: str, mistake: tuple[str | int, ...]
) -> None:
    validator = crd_validator(SCHEMAS / f"prometheus-operator-{crd}-crd.yaml", "v1")
    obj = monitored.one(kind)
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert schema_errors(validator, obj) == []
    # The check sees a misspelled field, which the API server would silently drop.
    broken = copy.deepcopy(obj)
    parent: Any = broken
    for key in mistake[:-1]:
        parent = parent[key]
    parent[mistake[-1]] = "30s"
    assert schema_errors(validator, broken)


def test_the_servicemonitor_scrapes_every_api_pods_metrics(monitored: Rendered) -> None:
    monitor, service = monitored.one("ServiceMonitor"), monitored.one("Service")
    labels = service["metadata"]["labels"].items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    container = monitored.container("Deployment")
    (container_port,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert endpoint["path"] == "/metrics"
    # The operator names the job after the Service: the alerts select that job.
    assert service["metadata"]["name"] == JOB
    annotations = monitored.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container_port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_each_alert_has_a_severity_a_summary_and_selects_the_apps_job(
    monitored: Rendered,
) -> None:
    rules = rules_of(monitored)
    assert {rule["alert"]: rule["labels"]["severity"] for rule in rules} == ALERTS
    for rule in rules:
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        selectors = re.findall(r"\{([^}]*)\}", rule["expr"])
        assert selectors, rule["alert"]
        assert all(f'job="{JOB}"' in selector for selector in selectors), rule["alert"]


async def test_the_rules_use_only_metrics_the_server_exposes(
    monitored: Rendered, tmp_path: Path
) -> None:
    write_model(tmp_path, small_ruleset())
    server = TestServer(checked_app(Gate(read_model(tmp_path)), Settings()), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as http:
            url = str(server.make_url("")).rstrip("/")
            async with http.post(f"{url}/api/recommend", json={"songs": ["Hey Jude"]}) as r:
                assert r.status == 200
            async with http.get(f"{url}/metrics") as r:
                exposed = await r.text()
    finally:
        await server.close()
    used = {
        name
        for rule in rules_of(monitored)
        for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", rule["expr"])
    }
    assert used >= {"recommender_ready", "http_requests_total"}
    for name in used:
        assert re.search(rf"^{name}[{{ ]", exposed, re.MULTILINE), f"{name} is not exposed"


def promtool_check(rendered: Rendered, directory: Path) -> None:
    """``promtool check rules`` on the rendered PrometheusRule passes."""
    rule_file = write_rule_file(rendered, directory / "rules.yaml")
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_checks_the_rules(monitored: Rendered, tmp_path: Path) -> None:
    promtool_check(monitored, tmp_path)


def test_the_documented_selector_label_and_threshold_patch_work(tmp_path: Path) -> None:
    (overlay := tmp_path / "overlay").mkdir()
    rendered = with_monitoring(overlay, labels=documented("labels"), patches=documented("patches"))
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert rendered.one(kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (stale,) = [r for r in rules_of(rendered) if r["alert"] == "PlaylistRecommenderModelStale"]
    assert stale["expr"].strip().endswith("> 30 * 24 * 3600")
    promtool_check(rendered, tmp_path)


def test_promtool_unit_tests_fire_every_alert_exactly_when_it_should(
    monitored: Rendered, tmp_path: Path
) -> None:
    write_rule_file(monitored, tmp_path / "rules.yaml")
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    result = subprocess.run(
        [tool("promtool"), "test", "rules", ALERTS_TEST.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    cases = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    quiet = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if not check["exp_alerts"]
    }
    assert fired == quiet == set(ALERTS)


# -- a real Prometheus scraping a real server ----------------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _timestamp(rfc3339: str) -> float:
    """Seconds since the epoch of a Prometheus API time (RFC 3339, up to nanoseconds)."""
    whole, _, fraction = rfc3339.rstrip("Z").partition(".")
    seconds = dt.datetime.fromisoformat(whole).replace(tzinfo=dt.UTC).timestamp()
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.25)


class Prometheus:
    """``prometheus`` on a free loopback port, scraping one target every second."""

    def __init__(self, directory: Path, target: str, rule_file: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(rule_file)],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [{"targets": [target], "labels": {"namespace": "test"}}],
                }
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(directory / "prometheus.log").open("wb"),
        )

    def ready(self) -> bool:
        """True once it answers /-/ready."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def scraped(self) -> bool:
        """True once the target has been scraped successfully."""
        query = urllib.parse.quote(f'up{{job="{JOB}"}} == 1')
        return bool(_get_json(f"{self.url}/api/v1/query?query={query}")["data"]["result"])

    def alerts(self) -> dict[str, dict[str, Any]]:
        """The firing alerts by name."""
        alerts = _get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return {a["labels"]["alertname"]: a for a in alerts if a["state"] == "firing"}


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``python -m http_api`` on an empty DATA_DIR; yields its host:port and the directory."""
    data_dir, port = tmp_path / "data", free_port()
    data_dir.mkdir()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "RULES_WAIT_SECONDS": "1",
        "CHECKPOINT_POLL_SECONDS": "0.5",
        "DRAIN_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "http_api"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    try:
        yield f"127.0.0.1:{port}", data_dir
    finally:
        terminate(process, grace=30)


def _recommend_status(target: str) -> int:
    request = urllib.request.Request(
        f"http://{target}/api/recommend", data=b'{"songs": ["Hey Jude"]}', method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.slow  # ~25 s: Prometheus starts, scrapes every second, three phases of alerts
def test_a_real_prometheus_scraping_a_real_server_fires_each_alert_when_it_should(
    monitored: Rendered, tmp_path: Path, api_server: tuple[str, Path]
) -> None:
    target, data_dir = api_server
    # The shipped expressions and thresholds, evaluated every second; only `for` is cut to 0
    # so that a condition shows as a firing alert at once instead of minutes later.
    rule_file = write_rule_file(monitored, tmp_path / "rules.yaml", **{"for": "0s"})
    (stale_rule,) = [r for r in rules_of(monitored) if r["alert"].endswith("ModelStale")]
    days = re.search(r">\s*(\d+)\s*\*\s*24\s*\*\s*3600\s*$", stale_rule["expr"].strip())
    assert days, "the staleness threshold is written as DAYS * 24 * 3600"
    stale_after = int(days[1]) * 24 * 3600
    prometheus = Prometheus(tmp_path, target, rule_file)
    try:
        _wait(prometheus.ready, 60, "Prometheus to start")
        _wait(prometheus.scraped, 30, "the first scrape of the server")

        # No rules on disk: not ready, and recommend answers 503 after RULES_WAIT_SECONDS.
        outage = {"NoReadyPods", "ErrorRatioHigh", "LatencyHigh"}

        def outage_seen() -> bool:
            assert _recommend_status(target) == 503
            return {f"PlaylistRecommender{name}" for name in outage} <= prometheus.alerts().keys()

        _wait(outage_seen, 60, "the outage alerts")
        assert not {"PlaylistRecommenderModelStale", "PlaylistRecommenderReloadFailing"} & set(
            prometheus.alerts()
        )

        # A checkpoint committing a damaged rules file: every retry of the load fails.
        atomic_write_bytes(data_dir / RULES_FILENAME, b"not CBOR at all")
        write_checkpoint(
            data_dir / CHECKPOINT_FILENAME, Checkpoint("9.9.9", "file:///x.csv", time.time_ns())
        )
        _wait(
            lambda: "PlaylistRecommenderReloadFailing" in prometheus.alerts(),
            30,
            "the reload failures alert",
        )

        # Good rules, mined just under the threshold ago: ready, then stale when they cross it.
        generated = time.time() - stale_after + 8
        write_model(data_dir, small_ruleset(generated_ns=int(generated * 1e9)))
        _wait(
            lambda: "PlaylistRecommenderModelStale" in prometheus.alerts(),
            40,
            "the stale model alert",
        )
        firing = prometheus.alerts()
        assert "PlaylistRecommenderNoReadyPods" not in firing
        # Not before the model crossed the threshold (fresh while it was under it).
        active_at = _timestamp(firing["PlaylistRecommenderModelStale"]["activeAt"])
        assert active_at >= generated + stale_after - 0.01
    finally:
        terminate(prometheus.process, grace=30)
