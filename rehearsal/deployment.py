"""The API Deployment's rollout, probe and drain settings, read from the manifest we ship."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEPLOYMENT_MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "base" / "deployment.yaml"
# Kubernetes' defaults for fields a manifest may leave out.
_PROBE_DEFAULTS = {"periodSeconds": 10, "failureThreshold": 3, "successThreshold": 1}
_PROBE_TIMEOUT_DEFAULT = 1
_GRACE_DEFAULT = 30


class ManifestError(ValueError):
    """The Deployment manifest lacks something the rehearsal mirrors."""


@dataclass(frozen=True)
class ReadinessProbe:
    """An HTTP readinessProbe: what HAProxy's health check mirrors."""

    path: str
    period_seconds: int
    failure_threshold: int
    success_threshold: int
    timeout_seconds: int

    @property
    def worst_detection_seconds(self) -> int:
        """Longest time from a pod turning unready to its removal from the Service."""
        return self.period_seconds * self.failure_threshold


@dataclass(frozen=True)
class RolloutSettings:
    """What the rehearsal copies from the Deployment."""

    replicas: int
    max_surge: int
    max_unavailable: int
    readiness: ReadinessProbe
    termination_grace_seconds: int
    # The container's environment (DRAIN_SECONDS, SHUTDOWN_TIMEOUT_SECONDS), as strings.
    env: Mapping[str, str]

    @property
    def drain_seconds(self) -> float:
        """How long a terminating pod keeps serving after /readyz turned 503."""
        return float(self.env.get("DRAIN_SECONDS", "5"))


def _get(mapping: Any, path: str) -> Any:
    node = mapping
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise ManifestError(f"the Deployment has no {path}")
        node = node[key]
    return node


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"{what} must be a whole number (percentages are not mirrored)")
    return value


def rollout_settings(document: Mapping[str, Any]) -> RolloutSettings:
    """Extract the settings from a parsed Deployment; raise ManifestError naming what is missing."""
    if document.get("kind") != "Deployment":
        raise ManifestError(f"expected a Deployment, found {document.get('kind')!r}")
    containers = _get(document, "spec.template.spec.containers")
    if not isinstance(containers, list) or len(containers) != 1:
        raise ManifestError("the Deployment must have exactly one container")
    container = containers[0]
    probe = _get(container, "readinessProbe")
    path = _get(probe, "httpGet.path")
    values = {key: _int(probe.get(key, default), key) for key, default in _PROBE_DEFAULTS.items()}
    readiness = ReadinessProbe(
        path=str(path),
        period_seconds=values["periodSeconds"],
        failure_threshold=values["failureThreshold"],
        success_threshold=values["successThreshold"],
        timeout_seconds=_int(probe.get("timeoutSeconds", _PROBE_TIMEOUT_DEFAULT), "timeoutSeconds"),
    )
    env = {
        str(item["name"]): str(item["value"])
        for item in container.get("env", [])
        if isinstance(item, dict) and "value" in item
    }
    spec = _get(document, "spec")
    return RolloutSettings(
        replicas=_int(spec.get("replicas", 1), "replicas"),
        max_surge=_int(_get(spec, "strategy.rollingUpdate.maxSurge"), "maxSurge"),
        max_unavailable=_int(_get(spec, "strategy.rollingUpdate.maxUnavailable"), "maxUnavailable"),
        readiness=readiness,
        termination_grace_seconds=_int(
            _get(document, "spec.template.spec").get(
                "terminationGracePeriodSeconds", _GRACE_DEFAULT
            ),
            "terminationGracePeriodSeconds",
        ),
        env=env,
    )


def load_rollout_settings(path: Path = DEPLOYMENT_MANIFEST) -> RolloutSettings:
    """Read the Deployment manifest (the base; the overlays do not patch the Deployment)."""
    with path.open(encoding="utf-8") as f:
        document = yaml.safe_load(f)
    if not isinstance(document, dict):
        raise ManifestError(f"{path} is not one YAML mapping")
    return rollout_settings(document)
