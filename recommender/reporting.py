"""How the RuleServer reports what it loads, without knowing who listens (the metrics do).

The serving core defines the interface; the HTTP layer implements it with its Prometheus
metrics (``http_api.metrics.MetricsReporter``) and the entry point hands that to the actors,
so no actor imports the HTTP layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from recommender.snapshot import Snapshot


class LoadReporter(Protocol):
    """Receives the outcome of every load attempt (called on the RuleServer's thread)."""

    def load_succeeded(self, snapshot: Snapshot) -> None:
        """A rule set was loaded and swapped in: ``snapshot`` is served from now on."""

    def load_failed(self) -> None:
        """A load attempt failed; the previous rule set (if any) is still served."""


class SilentReporter:
    """A :class:`LoadReporter` that records nothing (tools and tests without metrics)."""

    def load_succeeded(self, snapshot: Snapshot) -> None:
        """Ignore the load."""

    def load_failed(self) -> None:
        """Ignore the failure."""
