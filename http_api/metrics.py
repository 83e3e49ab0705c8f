"""Prometheus metrics of the server: requests and latency (handlers), rule reloads (actors).

One registry per process, module-level, because the actors (on their own threads) and the
handlers (on the event loop) record into the same series; prometheus-client is thread-safe.
The actors call :func:`record_reload_succeeded` and :func:`record_reload_failed`; the
``/metrics`` handler calls :func:`show_snapshot` with what it actually serves, then :func:`render`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

if TYPE_CHECKING:
    from http_api.state import Snapshot

# Requests that matched no route share one label, so random paths cannot grow the series.
UNMATCHED_ROUTE = "unmatched"

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route and status code.",
    ["route", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from a request reaching the handlers to its response being ready, by route.",
    ["route"],
    # A recommendation takes ~0.1-1 ms; the tail reaches the wait for the first rules (5 s).
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
RULES_LOADED = Gauge(
    "recommender_rules_loaded",
    "Rules in the rule set being served (0 before the first load).",
    registry=REGISTRY,
)
SONGS_LOADED = Gauge(
    "recommender_songs_loaded",
    "Songs in the song table of the rule set being served.",
    registry=REGISTRY,
)
MODEL_GENERATED = Gauge(
    "recommender_model_generated_timestamp_seconds",
    "Generation time of the rule set being served (the checkpoint's), in seconds since the epoch.",
    registry=REGISTRY,
)
RELOADS = Counter(
    "recommender_rule_reloads",
    "Rule sets loaded and swapped in.",
    registry=REGISTRY,
)
RELOAD_FAILURES = Counter(
    "recommender_rule_reload_failures",
    "Attempts to load a rule set that failed (the previous one kept being served).",
    registry=REGISTRY,
)


# (route, status) → its two child series: ``labels()`` takes a lock and builds a tuple per call,
# a measurable share of a ~100 µs request. Bounded: routes are the app's own, plus "unmatched".
_request_series: dict[tuple[str, int], tuple[Counter, Histogram]] = {}


def observe_request(route: str, status: int, seconds: float) -> None:
    """Count one answered request and its handling time."""
    series = _request_series.get((route, status))
    if series is None:
        series = _request_series.setdefault(
            (route, status), (REQUESTS.labels(route, str(status)), REQUEST_SECONDS.labels(route))
        )
    counter, histogram = series
    counter.inc()
    histogram.observe(seconds)


def show_snapshot(snapshot: Snapshot | None) -> None:
    """Set the rule-set gauges to describe ``snapshot`` (None: nothing loaded)."""
    if snapshot is None:
        RULES_LOADED.set(0)
        SONGS_LOADED.set(0)
        MODEL_GENERATED.set(0)
        return
    RULES_LOADED.set(snapshot.header.rule_count)
    SONGS_LOADED.set(snapshot.header.song_count)
    MODEL_GENERATED.set(snapshot.generated_ns / 1e9)


def record_reload_succeeded(snapshot: Snapshot) -> None:
    """Count a successful reload (called by the RuleServer after the swap)."""
    RELOADS.inc()
    show_snapshot(snapshot)


def record_reload_failed() -> None:
    """Count a failed load attempt (called by the RuleServer; it keeps the old snapshot)."""
    RELOAD_FAILURES.inc()


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of every metric, and its Content-Type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
