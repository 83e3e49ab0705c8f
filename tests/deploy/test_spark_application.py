"""The ML job on Spark (manifests/components/spark): a SparkApplication Sync hook valid against the
Spark Operator's CRD, with its service account and least-privilege RBAC, on the rules volume;
and the spark image's entry point, which gives its pods their roles."""

from __future__ import annotations

import copy
import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from mining.settings import Settings as MiningSettings
from mining.version import __version__
from tests.deploy.deployfiles import (
    HOOK,
    HOOK_DELETE_POLICY,
    MANIFESTS,
    OLDEST_KUBERNETES,
    REPO,
    SPARK_OVERLAYS,
    WAVE,
    Dockerfile,
    Rendered,
    annotations_of,
    crd_validator,
    schema_errors,
    validate,
)

CRD = Path(__file__).with_name("schemas") / "spark-operator-sparkapplication-crd.yaml"
ENTRYPOINT = REPO / "containers" / "spark-entrypoint.sh"
# scripts/images.py checks that the spark image holds the job here.
SPARK_MAIN = "/opt/venv/lib/python3.11/site-packages/mining/__main__.py"


@pytest.fixture(scope="module", params=SPARK_OVERLAYS)
def spark_rendered(request: pytest.FixtureRequest) -> Rendered:
    """Each overlay that mines with Spark, rendered by kubectl kustomize."""
    return Rendered(MANIFESTS / "overlays" / request.param)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    """A strict validator for SparkApplication objects, from the operator's CRD."""
    return crd_validator(CRD, "v1beta2")


def test_there_is_an_overlay_on_spark() -> None:
    assert SPARK_OVERLAYS == ["production-spark"]


def test_the_spark_application_replaces_the_job(spark_rendered: Rendered) -> None:
    assert sorted(obj["kind"] for obj in spark_rendered.objects) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "SparkApplication",
    ]
    assert {obj["metadata"]["namespace"] for obj in spark_rendered.objects} == {
        "playlist-recommender"
    }


def test_the_spark_application_is_valid_for_the_operators_crd(
    spark_rendered: Rendered, validator: jsonschema.protocols.Validator
) -> None:
    application = spark_rendered.one("SparkApplication")
    assert application["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    assert schema_errors(validator, application) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "driver", "serviceAcount"), "mining-spark"),
        (("spec", "executor", "instances"), "two"),
        (("spec", "mode"), "standalone"),
        (("spec", "driver", "securityContext", "readOnlyRootFileSystem"), True),
    ],
    ids=["misspelled-field", "wrong-type", "not-in-enum", "misspelled-nested-field"],
)
def test_the_schema_check_catches_mistakes(
    spark_rendered: Rendered,
    validator: jsonschema.protocols.Validator,
    path: tuple[str, ...],
    value: object,
) -> None:
    broken = copy.deepcopy(spark_rendered.one("SparkApplication"))
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    assert schema_errors(validator, broken)


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, None], ids=["oldest", "newest"])
def test_everything_else_is_strictly_valid_kubernetes(
    spark_rendered: Rendered, version: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "objects.yaml"
    known = [obj for obj in spark_rendered.objects if obj["kind"] != "SparkApplication"]
    path.write_text(yaml.safe_dump_all(known))
    result = validate(path, version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (result.stdout + result.stderr).strip()


def test_the_hook_runs_after_its_rbac_and_with_the_volume_before_the_api(
    spark_rendered: Rendered,
) -> None:
    application = spark_rendered.one("SparkApplication")
    hooks = [obj["kind"] for obj in spark_rendered.objects if HOOK in annotations_of(obj)]
    assert hooks == ["SparkApplication"]
    assert annotations_of(application)[HOOK] == "Sync"
    assert annotations_of(application)[HOOK_DELETE_POLICY] == "BeforeHookCreation"
    wave = int(annotations_of(application)[WAVE])
    assert wave == int(annotations_of(spark_rendered.one("PersistentVolumeClaim"))[WAVE])
    assert int(annotations_of(spark_rendered.one("Deployment"))[WAVE]) > wave
    # Argo CD finishes a wave before the next: the driver's identity exists when it starts.
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        assert int(annotations_of(spark_rendered.one(kind))[WAVE]) < wave
    # Retries on failure, bounded, and a deadline, like the Job's backoffLimit and deadline.
    policy = application["spec"]["restartPolicy"]
    assert policy["type"] == "OnFailure"
    assert 1 <= policy["onFailureRetries"] <= 3
    deadline = application["spec"]["driver"]["template"]["spec"]["activeDeadlineSeconds"]
    assert 0 < deadline <= 3 * 3600


def test_the_driver_may_manage_its_executors_and_nothing_more(spark_rendered: Rendered) -> None:
    application = spark_rendered.one("SparkApplication")
    account = spark_rendered.one("ServiceAccount")["metadata"]["name"]
    role, binding = spark_rendered.one("Role"), spark_rendered.one("RoleBinding")
    assert application["spec"]["driver"]["serviceAccount"] == account
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    namespace = application["metadata"]["namespace"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    ]
    granted = {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if rule["apiGroups"] == [""]
    }
    # What Spark's driver does on Kubernetes: executor pods, their config map, and services.
    for verb in ("create", "get", "list", "watch", "delete", "deletecollection"):
        assert ("pods", verb) in granted
    assert {("configmaps", "create"), ("configmaps", "delete")} <= granted
    # Nothing else, nowhere else.
    assert {resource for resource, _ in granted} == {"pods", "configmaps", "services"}
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role["rules"])
    assert not [obj for obj in spark_rendered.objects if obj["kind"].startswith("Cluster")]


def test_the_driver_reads_the_job_settings_and_writes_the_shared_volume(
    spark_rendered: Rendered, dockerfile: Dockerfile
) -> None:
    application = spark_rendered.one("SparkApplication")
    spec, config_map = application["spec"], spark_rendered.one("ConfigMap")
    driver, executor = spec["driver"], spec["executor"]
    assert config_map["metadata"]["name"].startswith("mining-config-")
    assert driver["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    # The job's own validation accepts what the driver gets: the image's ENV, then the ConfigMap.
    settings = MiningSettings.from_env(dockerfile.env("spark") | config_map["data"])
    assert settings.engine == "spark"
    # spark-submit gives the master; the job must not override it.
    assert settings.spark.master is None
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    claim = spark_rendered.one("PersistentVolumeClaim")["metadata"]["name"]
    (rules,) = [m for m in driver["volumeMounts"] if m["mountPath"] == str(settings.data_dir)]
    assert not rules.get("readOnly", False)
    assert volumes[rules["name"]]["persistentVolumeClaim"]["claimName"] == claim
    # Executors read a downloaded dataset from the same path, and write nothing there.
    (shared,) = [m for m in executor["volumeMounts"] if m["mountPath"] == str(settings.data_dir)]
    assert shared["name"] == rules["name"]
    assert shared["readOnly"] is True


def test_a_dataset_change_reruns_the_spark_hook(tmp_path: Path) -> None:
    copied = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copied)
    production = copied / "overlays" / "production" / "kustomization.yaml"
    before = Rendered(copied / "overlays" / "production-spark")
    old_url = before.one("ConfigMap")["data"]["DATASET_URL"]
    production.write_text(production.read_text().replace(old_url, "s3a://datasets/ds2.csv"))
    after = Rendered(copied / "overlays" / "production-spark")
    renamed = after.one("ConfigMap")["metadata"]["name"]
    assert renamed != before.one("ConfigMap")["metadata"]["name"]
    driver = after.one("SparkApplication")["spec"]["driver"]
    assert driver["envFrom"] == [{"configMapRef": {"name": renamed}}]
    assert after.one("Deployment") == before.one("Deployment")


def test_pods_run_unprivileged_with_only_tmp_and_the_rules_writable(
    spark_rendered: Rendered, dockerfile: Dockerfile
) -> None:
    spec = spark_rendered.one("SparkApplication")["spec"]
    uid, gid = dockerfile.instructions("spark", "USER")[-1].split(":")
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for role in ("driver", "executor"):
        pod = spec[role]
        assert pod["podSecurityContext"]["runAsNonRoot"] is True
        assert pod["podSecurityContext"]["runAsUser"] == int(uid)
        assert pod["podSecurityContext"]["runAsGroup"] == int(gid)
        assert pod["podSecurityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        (home,) = [
            m for m in pod["volumeMounts"] if m["mountPath"] == dockerfile.env("spark")["HOME"]
        ]
        assert "emptyDir" in volumes[home["name"]]


def spark_mebibytes(size: str) -> float:
    """A Spark memory size (``512m``, ``2g``) in MiB."""
    return int(size[:-1]) * {"m": 1, "g": 1024}[size[-1]]


def test_resources_are_declared_for_driver_and_executors(spark_rendered: Rendered) -> None:
    spec = spark_rendered.one("SparkApplication")["spec"]
    for role in ("driver", "executor"):
        assert spec[role]["cores"] >= 1
        assert spark_mebibytes(spec[role]["memory"]) >= 1024
        # Spark's own minimum overhead is 384 MiB.
        assert spark_mebibytes(spec[role]["memoryOverhead"]) >= 384
    # The driver's overhead holds the job's Python (song table, itemsets, rules).
    assert spark_mebibytes(spec["driver"]["memoryOverhead"]) >= 1024
    assert spec["executor"]["instances"] >= 1
    # The job's budget is its Python's (spark-submit's JVM is outside it): within the overhead,
    # and enough for the job (the settings' own lower bound).
    (budget,) = [e["value"] for e in spec["driver"]["env"] if e["name"] == "MINING_MEMORY_LIMIT"]
    limit = MiningSettings.from_env({"MINING_MEMORY_LIMIT": budget}).memory_limit
    assert limit is not None
    assert limit <= spark_mebibytes(spec["driver"]["memoryOverhead"]) * 2**20


def test_the_image_and_spark_are_the_ones_built(spark_rendered: Rendered) -> None:
    spec = spark_rendered.one("SparkApplication")["spec"]
    assert spec["image"].endswith(f"/playlist-recommender-spark:{__version__}"), spec["image"]
    assert spec["type"] == "Python"
    assert spec["mode"] == "cluster"
    assert spec["mainApplicationFile"] == f"local://{SPARK_MAIN}"
    # The operator submits with this version's conventions; the image runs the pinned pyspark.
    assert spec["sparkVersion"] == importlib.metadata.version("pyspark")


def test_the_spark_image_enters_through_its_entry_point(dockerfile: Dockerfile) -> None:
    assert dockerfile.exec_form("spark", "ENTRYPOINT") == ["/opt/spark-entrypoint.sh"]
    env = dockerfile.env("spark")
    assert env["SPARK_HOME"] == str(Path(SPARK_MAIN).parents[1] / "pyspark")
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == "/opt/venv/bin/python"
    assert dockerfile.chain("spark")[0].base == "${RUNTIME_IMAGE}"
    copied = [
        arguments
        for arguments in dockerfile.instructions("spark", "COPY")
        if not arguments.startswith("--from=")
    ]
    assert copied == ["containers/spark-entrypoint.sh /opt/spark-entrypoint.sh"]
    uid, gid = dockerfile.instructions("spark", "USER")[-1].split(":")
    assert int(uid) > 0
    assert int(gid) > 0


def recorder(directory: Path, name: str) -> Path:
    """An executable that prints its name and arguments, one per line, instead of running."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f'#!/bin/sh\necho {name}\nfor a in "$@"; do echo "$a"; done\n')
    path.chmod(0o755)
    return path


def entrypoint(tmp_path: Path, *arguments: str, **env: str) -> list[str]:
    """What the entry point executes for ``arguments``, with spark-submit, java, python faked."""
    spark_home, java_home, bin_dir = tmp_path / "spark", tmp_path / "java", tmp_path / "bin"
    recorder(spark_home / "bin", "spark-submit")
    recorder(java_home / "bin", "java")
    recorder(bin_dir, "python")
    full_env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SPARK_HOME": str(spark_home),
        "JAVA_HOME": str(java_home),
        **env,
    }
    result = subprocess.run(
        [str(ENTRYPOINT), *arguments], env=full_env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_without_arguments_the_image_runs_the_job(tmp_path: Path) -> None:
    assert entrypoint(tmp_path) == ["python", "-m", "mining"]


def test_a_driver_pod_runs_spark_submit_in_client_mode_on_its_own_address(
    tmp_path: Path,
) -> None:
    arguments = ["--properties-file", "/opt/spark/conf/spark.properties"]
    arguments += ["--class", "org.apache.spark.deploy.PythonRunner", f"local://{SPARK_MAIN}"]
    assert entrypoint(tmp_path, "driver", *arguments, SPARK_DRIVER_BIND_ADDRESS="10.1.2.3") == [
        "spark-submit",
        "--conf",
        "spark.driver.bindAddress=10.1.2.3",
        "--conf",
        "spark.executorEnv.SPARK_DRIVER_POD_IP=10.1.2.3",
        "--deploy-mode",
        "client",
        *arguments,
    ]


def test_an_executor_pod_runs_the_kubernetes_executor_backend(tmp_path: Path) -> None:
    # Spark numbers the JVM options; 10 comes after 2.
    options = {f"SPARK_JAVA_OPT_{i}": f"-Dopt{i}=x y" for i in (0, 1, 2, 10)}
    executed = entrypoint(
        tmp_path,
        "executor",
        SPARK_EXECUTOR_MEMORY="2048m",
        SPARK_DRIVER_URL="spark://CoarseGrainedScheduler@driver-svc:7078",
        SPARK_EXECUTOR_ID="1",
        SPARK_EXECUTOR_CORES="1",
        SPARK_APPLICATION_ID="spark-1234",
        SPARK_EXECUTOR_POD_IP="10.1.2.4",
        SPARK_RESOURCE_PROFILE_ID="0",
        SPARK_EXECUTOR_POD_NAME="mining-exec-1",
        **options,
    )
    assert executed[0] == "java"
    assert executed[1:5] == ["-Dopt0=x y", "-Dopt1=x y", "-Dopt2=x y", "-Dopt10=x y"]
    assert executed[5:7] == ["-Xms2048m", "-Xmx2048m"]
    assert executed[7:9] == ["-cp", f"{tmp_path / 'spark'}/jars/*"]
    assert executed[9] == "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
    flags = dict(zip(executed[10::2], executed[11::2], strict=True))
    assert flags == {
        "--driver-url": "spark://CoarseGrainedScheduler@driver-svc:7078",
        "--executor-id": "1",
        "--cores": "1",
        "--app-id": "spark-1234",
        "--hostname": "10.1.2.4",
        "--resourceProfileId": "0",
        "--podName": "mining-exec-1",
    }


def test_every_object_and_pod_has_the_recommended_labels(spark_rendered: Rendered) -> None:
    recommended = {
        "app.kubernetes.io/name": "playlist-recommender",
        "app.kubernetes.io/instance": "playlist-recommender",
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/part-of": "playlist-recommender",
        "app.kubernetes.io/managed-by": "kustomize",
    }
    application = spark_rendered.one("SparkApplication")
    parts = [
        (f"{o['kind']} {o['metadata']['name']}", o["metadata"]) for o in spark_rendered.objects
    ]
    parts += [
        (f"SparkApplication {role}", application["spec"][role]) for role in ("driver", "executor")
    ]
    for where, metadata in parts:
        labels = metadata.get("labels") or {}
        assert labels.items() >= recommended.items(), where
        assert labels.get("app.kubernetes.io/component"), where
    # The version label is written in the component as in the base: both follow the package.
    component = yaml.safe_load(
        (MANIFESTS / "components" / "spark" / "kustomization.yaml").read_text()
    )
    assert component["labels"][0]["pairs"] == recommended
