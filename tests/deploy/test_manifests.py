"""The Kubernetes manifests as kustomize renders them: valid, and consistent with the images,
the servers' own settings and the Argo CD hook pattern."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from http_api.settings import Settings as ApiSettings
from mining.settings import Settings as MiningSettings
from mining.version import __version__
from tests.deploy.deployfiles import (
    HOOK,
    HOOK_DELETE_POLICY,
    MANIFESTS,
    OLDEST_KUBERNETES,
    WAVE,
    Dockerfile,
    Rendered,
    annotations_of,
    mebibytes,
    validate,
)
from tests.helpers.processes import free_port

# Seconds left between the server's own shutdown deadline and Kubernetes' SIGKILL.
MARGIN_BEFORE_SIGKILL_S = 5
PRODUCTION = MANIFESTS / "overlays" / "production"


def mounted_volume(rendered: Rendered, kind: str, path: str) -> tuple[dict[str, Any], Any]:
    """The volumeMount at `path` in the pods of `kind`, and the volume it mounts."""
    (mount,) = [m for m in rendered.container(kind)["volumeMounts"] if m["mountPath"] == path]
    (volume,) = [v for v in rendered.pod_spec(kind)["volumes"] if v["name"] == mount["name"]]
    return mount, volume


def test_each_overlay_renders_the_whole_application_in_one_namespace(rendered: Rendered) -> None:
    assert sorted(obj["kind"] for obj in rendered.objects) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "Service",
    ]
    assert {obj["metadata"]["namespace"] for obj in rendered.objects} == {"playlist-recommender"}


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, None], ids=["oldest", "newest"])
def test_overlay_is_strictly_valid_kubernetes(
    rendered: Rendered, version: str | None, tmp_path: Path
) -> None:
    path = tmp_path / f"{rendered.name}.yaml"
    path.write_text(yaml.safe_dump_all(rendered.objects))
    result = validate(path, version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (result.stdout + result.stderr).strip()


def test_strict_validation_rejects_a_misspelled_field(tmp_path: Path) -> None:
    production = Rendered(PRODUCTION)
    text = yaml.safe_dump_all(production.objects)
    path = tmp_path / "typo.yaml"
    path.write_text(text.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    result = validate(path, OLDEST_KUBERNETES)
    assert result.returncode != 0
    assert "readOnlyRootFileSystem" in result.stdout + result.stderr


def test_mining_job_is_a_sync_hook_in_the_volume_wave_before_the_api(rendered: Rendered) -> None:
    job, pvc = rendered.one("Job"), rendered.one("PersistentVolumeClaim")
    deployment = rendered.one("Deployment")
    assert annotations_of(job)[HOOK] == "Sync"
    assert annotations_of(job)[HOOK_DELETE_POLICY] == "BeforeHookCreation"
    assert annotations_of(job)[WAVE] == annotations_of(pvc)[WAVE] == "0"
    assert int(annotations_of(deployment)[WAVE]) > 0
    # Argo CD diffs only non-hook resources: everything else must be an ordinary resource.
    assert [obj["kind"] for obj in rendered.objects if HOOK in annotations_of(obj)] == ["Job"]
    # A TTL makes Argo CD recreate the finished Job in a loop under automated sync.
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_mining_job_reads_its_settings_from_the_generated_config_map(
    rendered: Rendered, dockerfile: Dockerfile
) -> None:
    config_map = rendered.one("ConfigMap")
    assert config_map["metadata"]["name"].startswith("mining-config-")
    env_from = rendered.container("Job")["envFrom"]
    assert env_from == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    # The job's own validation accepts what the pod gets: image ENV, then the ConfigMap.
    settings = MiningSettings.from_env(dockerfile.env("mining") | config_map["data"])
    mount, volume = mounted_volume(rendered, "Job", str(settings.data_dir))
    assert not mount.get("readOnly", False)
    claim = rendered.one("PersistentVolumeClaim")["metadata"]["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim


def test_dataset_url_is_set_in_one_line_of_the_production_overlay() -> None:
    mentions = [
        (path.relative_to(MANIFESTS), line)
        for path in sorted(MANIFESTS.rglob("*.yaml"))
        if "overlays" not in path.parts or PRODUCTION in path.parents
        for line in path.read_text().splitlines()
        if "DATASET_URL" in line and not line.lstrip().startswith("#")
    ]
    assert len(mentions) == 1, mentions
    assert mentions[0][0] == Path("overlays/production/kustomization.yaml")
    settings = MiningSettings.from_env(Rendered(PRODUCTION).one("ConfigMap")["data"])
    assert settings.dataset_url.startswith("https://")


def test_a_dataset_change_reruns_the_mining_hook_and_leaves_the_api_alone(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    kustomization = copy / "overlays" / "production" / "kustomization.yaml"
    before = Rendered(copy / "overlays" / "production")
    old_url = before.one("ConfigMap")["data"]["DATASET_URL"]
    kustomization.write_text(
        kustomization.read_text().replace(old_url, "https://datasets.invalid/ds2.csv")
    )
    after = Rendered(copy / "overlays" / "production")
    renamed = after.one("ConfigMap")["metadata"]["name"]
    # A new name is a change Argo CD sees (the hook itself is never diffed): it syncs, the hook
    # runs again, and its pod reads the new ConfigMap.
    assert renamed != before.one("ConfigMap")["metadata"]["name"]
    assert after.container("Job")["envFrom"] == [{"configMapRef": {"name": renamed}}]
    assert after.one("ConfigMap")["data"]["DATASET_URL"] == "https://datasets.invalid/ds2.csv"
    # The API pods reload new rules by themselves: no restart for a dataset change.
    assert after.one("Deployment") == before.one("Deployment")


def test_production_volume_is_shared_by_every_node() -> None:
    pvc = Rendered(PRODUCTION).one("PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_api_pods_mount_the_rules_read_only(rendered: Rendered, dockerfile: Dockerfile) -> None:
    data_dir = dockerfile.env("api")["DATA_DIR"]
    mount, volume = mounted_volume(rendered, "Deployment", data_dir)
    assert mount["readOnly"] is True
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    claim = rendered.one("PersistentVolumeClaim")["metadata"]["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim


def test_api_settings_in_the_pod_agree_with_ports_mounts_and_grace_period(
    rendered: Rendered, dockerfile: Dockerfile
) -> None:
    container = rendered.container("Deployment")
    pod_env = {item["name"]: item["value"] for item in container.get("env", [])}
    settings = ApiSettings.from_env(dockerfile.env("api") | pod_env)
    (port,) = container["ports"]
    assert settings.port == port["containerPort"]
    assert settings.host == "0.0.0.0"
    mounted_volume(rendered, "Deployment", str(settings.data_dir))
    grace = rendered.pod_spec("Deployment")["terminationGracePeriodSeconds"]
    assert grace >= (
        settings.drain_seconds + settings.shutdown_timeout_seconds + MARGIN_BEFORE_SIGKILL_S
    )
    # Anything that health-checks /readyz (a load balancer, an ingress) sees the drain's 503
    # before the drain ends.
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= settings.drain_seconds


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m http_api` on a free loopback port with no rules yet; yields its base URL."""
    port = free_port()
    env = os.environ | {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(tmp_path_factory.mktemp("empty-data-dir")),
        "DRAIN_SECONDS": "0",
        "SHUTDOWN_TIMEOUT_SECONDS": "1",
    }
    server = subprocess.Popen([sys.executable, "-m", "http_api"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while http_status(base + "/healthz") != 200:
            assert server.poll() is None, "python -m http_api exited"
            assert time.monotonic() < deadline, "python -m http_api did not answer /healthz"
            time.sleep(0.05)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


def http_status(url: str) -> int:
    """Status of a GET (0: no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_probes_call_the_servers_real_endpoints(rendered: Rendered, api_server: str) -> None:
    container = rendered.container("Deployment")
    paths = {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert paths == {
        "startupProbe": "/healthz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
    }
    # A server with no rules yet: alive, not ready. A wrong path would answer 404.
    assert http_status(api_server + "/healthz") == 200
    assert http_status(api_server + "/readyz") == 503
    port_names = {port["name"] for port in container["ports"]}
    assert {container[probe]["httpGet"]["port"] for probe in paths} <= port_names


def test_service_sends_port_52004_to_api_pods_only(rendered: Rendered) -> None:
    service = rendered.one("Service")
    selector = service["spec"]["selector"].items()
    api_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"].items()
    job_labels = rendered.one("Job")["spec"]["template"]["metadata"]["labels"].items()
    assert selector <= api_labels
    assert not selector <= job_labels
    (port,) = service["spec"]["ports"]
    assert port["port"] == ApiSettings().port == 52004
    container_ports = {
        p["name"]: p["containerPort"] for p in rendered.container("Deployment")["ports"]
    }
    assert port["targetPort"] in container_ports


def test_rolling_update_keeps_every_replica_serving(rendered: Rendered) -> None:
    spec = rendered.one("Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_disruption_budget_and_autoscaler_act_on_the_api(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment")
    pdb, hpa = rendered.one("PodDisruptionBudget"), rendered.one("HorizontalPodAutoscaler")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"]
    # A node drain can always evict one pod.
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    # Their health depends on the API pods: in an earlier wave they would hold up the sync
    # (Argo CD waits for a wave to be healthy) before the Deployment is ever applied.
    waves = {int(annotations_of(obj).get(WAVE, "0")) for obj in (deployment, pdb, hpa)}
    assert len(waves) == 1
    assert max(int(annotations_of(obj).get(WAVE, "0")) for obj in rendered.objects) in waves


@pytest.mark.parametrize(("kind", "target"), [("Deployment", "api"), ("Job", "mining")])
def test_pods_run_unprivileged_with_only_tmp_writable(
    rendered: Rendered, dockerfile: Dockerfile, kind: str, target: str
) -> None:
    spec = rendered.pod_spec(kind)
    uid, gid = dockerfile.instructions(target, "USER")[-1].split(":")
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == int(uid)
    assert spec["securityContext"]["runAsGroup"] == int(gid)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert rendered.container(kind)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    home = dockerfile.env(target)["HOME"]
    _, volume = mounted_volume(rendered, kind, home)
    assert "emptyDir" in volume


def test_memory_is_requested_and_bounded(rendered: Rendered) -> None:
    api = rendered.container("Deployment")["resources"]
    job = rendered.container("Job")["resources"]
    # Equal request and limit: the API pods are the last to be evicted under memory pressure.
    assert api["requests"]["memory"] == api["limits"]["memory"]
    # The serving benchmark's bound is 200 MiB RSS during a reload; mlxtend peaks near 1 GB.
    assert mebibytes(api["limits"]["memory"]) >= 200
    assert mebibytes(job["limits"]["memory"]) >= mebibytes(job["requests"]["memory"]) >= 1000
    assert "cpu" in api["requests"]
    assert "cpu" in job["requests"]


def test_images_are_the_package_version(rendered: Rendered) -> None:
    for kind, target in (("Deployment", "api"), ("Job", "mining")):
        image = rendered.container(kind)["image"]
        assert image.endswith(f"/playlist-recommender-{target}:{__version__}"), image


# Kubernetes' recommended labels (kubernetes.io/docs/concepts/overview/working-with-objects/
# common-labels): every object and pod template carries them all.
RECOMMENDED = {
    "app.kubernetes.io/name": "playlist-recommender",
    "app.kubernetes.io/instance": "playlist-recommender",
    "app.kubernetes.io/version": __version__,
    "app.kubernetes.io/part-of": "playlist-recommender",
    "app.kubernetes.io/managed-by": "kustomize",
}
COMPONENT = "app.kubernetes.io/component"
# Only these may select pods: a Deployment's selector is immutable, so a label whose value
# changes with a release (version) or that a tool rewrites (instance, managed-by) must not be in it.
SELECTOR_LABELS = {"app.kubernetes.io/name", COMPONENT}


def labelled_parts(obj: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """An object's labels, and its pod template's, each with where they are."""
    where = f"{obj['kind']} {obj['metadata']['name']}"
    parts = [(where, dict(obj["metadata"].get("labels") or {}))]
    template = obj.get("spec", {}).get("template")
    if template is not None:
        parts.append((f"{where} pod template", dict(template["metadata"].get("labels") or {})))
    return parts


def selectors(rendered: Rendered) -> dict[str, dict[str, str]]:
    """Every label selector in the rendered objects, by where it is."""
    deployment = rendered.one("Deployment")
    found = {
        "Deployment selector": deployment["spec"]["selector"]["matchLabels"],
        "Service selector": rendered.one("Service")["spec"]["selector"],
        "PodDisruptionBudget selector": rendered.one("PodDisruptionBudget")["spec"]["selector"][
            "matchLabels"
        ],
    }
    for index, constraint in enumerate(
        deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
    ):
        found[f"topologySpreadConstraints[{index}]"] = constraint["labelSelector"]["matchLabels"]
    return found


def test_every_object_and_pod_template_has_the_recommended_labels(rendered: Rendered) -> None:
    components = {
        ("Deployment", "api"): "api",
        ("Service", "playlist-recommender"): "api",
        ("PodDisruptionBudget", "api"): "api",
        ("HorizontalPodAutoscaler", "api"): "api",
        ("Job", "mining"): "mining",
        ("PersistentVolumeClaim", "ml-data"): "rules-storage",
        ("ConfigMap", "mining-config"): "mining",
    }
    for obj in rendered.objects:
        name = obj["metadata"]["name"]
        key = (obj["kind"], "mining-config" if name.startswith("mining-config-") else name)
        for where, labels in labelled_parts(obj):
            assert labels.items() >= RECOMMENDED.items(), where
            # Objects added later (an overlay's, a component's) name their own component.
            assert labels.get(COMPONENT) == components.get(key, labels.get(COMPONENT)), where
            assert labels.get(COMPONENT), where


def test_selectors_name_only_the_labels_that_never_change(rendered: Rendered) -> None:
    api_pods = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    for where, selector in selectors(rendered).items():
        assert selector == {"app.kubernetes.io/name": "playlist-recommender", COMPONENT: "api"}, (
            where
        )
        assert set(selector) <= SELECTOR_LABELS
        assert selector.items() <= api_pods.items()


def test_a_new_version_relabels_everything_and_keeps_every_selector(tmp_path: Path) -> None:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    base = copy / "base" / "kustomization.yaml"
    text = base.read_text()
    line = f'app.kubernetes.io/version: "{__version__}"'
    assert text.count(line) == 1
    base.write_text(text.replace(line, 'app.kubernetes.io/version: "9.9.9"'))
    for overlay in ("local", "production"):
        before = Rendered(MANIFESTS / "overlays" / overlay)
        after = Rendered(copy / "overlays" / overlay)
        for obj in after.objects:
            for where, labels in labelled_parts(obj):
                assert labels["app.kubernetes.io/version"] == "9.9.9", where
        # An upgrade applies over the running objects: an immutable selector must not move.
        assert selectors(after) == selectors(before)


def test_the_argo_cd_application_has_the_recommended_labels() -> None:
    application = yaml.safe_load((MANIFESTS / "argocd" / "application.yaml").read_text())
    labels = application["metadata"]["labels"]
    assert labels == {
        **RECOMMENDED,
        "app.kubernetes.io/managed-by": "kubectl",
        COMPONENT: "argocd-application",
    }
    # Argo CD's default tracking label is app.kubernetes.io/instance, set to the Application's
    # name on everything it deploys: the value the manifests carry, so the two never disagree.
    assert application["metadata"]["name"] == RECOMMENDED["app.kubernetes.io/instance"]
