"""The Argo CD Application: valid against Argo CD's own CRD schema, syncing the production
overlay automatically, without fighting the autoscaler."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.deployfiles import MANIFESTS, REPO, Rendered

CRD = Path(__file__).with_name("schemas") / "argocd-application-crd.yaml"
APPLICATION = MANIFESTS / "argocd" / "application.yaml"


def strict(schema: Any) -> Any:
    """The schema with every object that lists its properties refusing any other field.

    The API server prunes unknown fields of a custom resource without a word, so a misspelled
    `selfHeal` would silently turn self-healing off; this makes such a field an error here.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        tightened["additionalProperties"] = False
    return tightened


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    """A validator for Application objects, from the CRD's openAPIV3Schema made strict."""
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft7Validator
    )
    validator_class.check_schema(schema)
    return validator_class(schema)


@pytest.fixture(scope="module")
def application() -> dict[str, Any]:
    """manifests/argocd/application.yaml, parsed."""
    document: dict[str, Any] = yaml.safe_load(APPLICATION.read_text())
    return document


def errors(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> list[str]:
    """Every schema violation in `document`, one line each."""
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_application_is_valid_for_argo_cds_crd(
    validator: jsonschema.protocols.Validator, application: dict[str, Any]
) -> None:
    assert application["apiVersion"] == "argoproj.io/v1alpha1"
    assert application["kind"] == "Application"
    assert errors(validator, application) == []


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
    assert errors(validator, broken)


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
