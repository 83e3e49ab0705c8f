"""Checks that hold for every test: each response an app under test sent matched the API's
OpenAPI document (tests/helpers/openapi.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.openapi import CHECKER


@pytest.fixture(autouse=True)
def _responses_match_the_openapi_document() -> Iterator[None]:
    """Fail a test during which an app built by ``checked_app`` answered off the document."""
    CHECKER.take_problems()
    yield
    problems = CHECKER.take_problems()
    assert not problems, "responses that do not match http_api/openapi.json:\n" + "\n".join(
        problems
    )
