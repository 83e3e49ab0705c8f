"""Fixtures of the deployment tests: each overlay rendered, and the Dockerfile parsed."""

from __future__ import annotations

import pytest

from tests.deploy.deployfiles import DOCKERFILE, MANIFESTS, OVERLAYS, Dockerfile, Rendered


@pytest.fixture(scope="session", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """Each overlay under manifests/overlays, rendered by kubectl kustomize."""
    return Rendered(MANIFESTS / "overlays" / request.param)


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    """containers/Dockerfile, parsed."""
    return Dockerfile(DOCKERFILE)
