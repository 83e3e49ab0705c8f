"""Reading the Deployment's rollout, probe and drain settings from the manifest."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from rehearsal.deployment import (
    DEPLOYMENT_MANIFEST,
    ManifestError,
    load_rollout_settings,
    rollout_settings,
)


def manifest() -> dict[str, Any]:
    with DEPLOYMENT_MANIFEST.open(encoding="utf-8") as f:
        document: dict[str, Any] = yaml.safe_load(f)
    return document


def container(document: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = document["spec"]["template"]["spec"]["containers"][0]
    return result


def test_the_shipped_manifest_is_what_the_rehearsal_mirrors() -> None:
    document = manifest()
    probe = container(document)["readinessProbe"]
    settings = load_rollout_settings()
    assert settings.readiness.path == probe["httpGet"]["path"] == "/readyz"
    assert settings.readiness.period_seconds == probe["periodSeconds"]
    assert settings.readiness.failure_threshold == probe["failureThreshold"]
    assert settings.readiness.timeout_seconds == probe.get("timeoutSeconds", 1)
    assert settings.replicas == document["spec"]["replicas"]
    assert (settings.max_surge, settings.max_unavailable) == (1, 0)
    assert settings.drain_seconds == float(settings.env["DRAIN_SECONDS"])
    # The drain must outlast the readiness flip, or a terminating pod gets traffic it refuses.
    assert settings.drain_seconds > settings.readiness.worst_detection_seconds


def test_kubernetes_defaults_fill_fields_the_manifest_leaves_out() -> None:
    document = manifest()
    probe = container(document)["readinessProbe"]
    for key in ("periodSeconds", "failureThreshold", "successThreshold", "timeoutSeconds"):
        probe.pop(key, None)
    del document["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    settings = rollout_settings(document)
    assert settings.readiness.period_seconds == 10
    assert settings.readiness.failure_threshold == 3
    assert settings.readiness.success_threshold == 1
    assert settings.readiness.timeout_seconds == 1
    assert settings.termination_grace_seconds == 30
    assert settings.readiness.worst_detection_seconds == 30


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(kind="StatefulSet"), "expected a Deployment"),
        (lambda d: container(d).pop("readinessProbe"), "readinessProbe"),
        (lambda d: container(d)["readinessProbe"].pop("httpGet"), "httpGet.path"),
        (
            lambda d: d["spec"]["strategy"]["rollingUpdate"].update(maxSurge="25%"),
            "maxSurge must be a whole number",
        ),
        (lambda d: d["spec"].pop("strategy"), "strategy.rollingUpdate.maxSurge"),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"].append({}),
            "exactly one container",
        ),
    ],
)
def test_a_manifest_lacking_what_is_mirrored_is_refused_by_name(edit: Any, message: str) -> None:
    document = copy.deepcopy(manifest())
    edit(document)
    with pytest.raises(ManifestError, match=message):
        rollout_settings(document)
