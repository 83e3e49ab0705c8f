"""Fixtures for the actor tests: every actor a test starts is stopped after it."""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest


@pytest.fixture(autouse=True)
def stop_every_actor() -> Iterator[None]:
    """Stop any actor a test left running (pykka threads are not daemons)."""
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=30)
