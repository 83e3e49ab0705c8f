"""The Argo CD Application: valid against Argo CD's own CRD schema, syncing the production
overlay automatically, without fighting the autoscaler."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.deployfiles import (
    MANIFESTS,
    REPO,
    SCHEMAS,
    Rendered,
    crd_validator,
    schema_errors,
)

CRD = SCHEMAS / "argocd-application-crd.yaml"
APPLICATION = MANIFESTS / "argocd" / "application.yaml"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    """A validator for Application objects, from the CRD's openAPIV3Schema made strict."""
    return crd_validator(CRD, "v1alpha1")


@pytest.fixture(scope="module")
def application() -> dict[str, Any]:
    """manifests/argocd/application.yaml, parsed."""
    document: dict[str, Any] = yaml.safe_load(APPLICATION.read_text())
    return document


def test_application_is_valid_for_argo_cds_crd(
    validator: jsonschema.protocols.Validator, application: dict[str, Any]
) -> None:
    assert application["apiVersion"] == "argoproj.io/v1alpha1"
    assert application["kind"] == "Application"
    assert schema_errors(validator, application) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "syncPolicy", "automated", "selfHel"), True),
        (("spec", "syncPolicy", "retry", "limit"), "five"),
        (("spec", "sourcee"), {}),
    ],
    ids=["misspelled-field", "wrong-type", "unknown-section"],
)
def test_schema_check_catches_mistakes(
    validator: jsonschema.protocols.Validator,
    application: dict[str, Any],
    path: tuple[str, ...],
    value: object,
) -> None:
    broken = copy.deepcopy(application)
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    assert schema_errors(validator, broken)


def test_application_syncs_the_production_overlay_automatically(
    application: dict[str, Any],
) -> None:
    spec = application["spec"]
    overlay = REPO / spec["source"]["path"]
    assert overlay == MANIFESTS / "overlays" / "production"
    namespaces = {obj["metadata"]["namespace"] for obj in Rendered(overlay).objects}
    assert namespaces == {spec["destination"]["namespace"]}
    policy = spec["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert "CreateNamespace=true" in policy["syncOptions"]
    assert policy["retry"]["limit"] >= 1
    assert set(policy["retry"]["backoff"]) == {"duration", "factor", "maxDuration"}


def test_self_heal_leaves_the_autoscalers_replica_count_alone(
    application: dict[str, Any],
) -> None:
    rendered = Rendered(REPO / application["spec"]["source"]["path"])
    deployment = rendered.one("Deployment")["metadata"]["name"]
    assert rendered.one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == deployment
    assert {
        "group": "apps",
        "kind": "Deployment",
        "name": deployment,
        "jsonPointers": ["/spec/replicas"],
    } in application["spec"]["ignoreDifferences"]
    # Without this, a sync would still apply the 2 replicas written in Git.
    assert "RespectIgnoreDifferences=true" in application["spec"]["syncPolicy"]["syncOptions"]
