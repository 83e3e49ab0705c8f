"""Prometheus metrics of the server: requests and latency (handlers), rule reloads (actors).

One registry per process, module-level, because the actors (on their own threads) and the
handlers (on the event loop) record into the same series; prometheus-client is thread-safe.
The actors call :func:`record_reload_succeeded` and :func:`record_reload_failed`; the
``/metrics`` handler calls :func:`show_snapshot` with what it actually serves, then :func:`render`.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from http_api.state import Snapshot

# Requests that matched no route share one label, so random paths cannot grow the series.
UNMATCHED_ROUTE = "unmatched"
# Requests refused before routing (unparsable, or a target that is not a path) share another.
MALFORMED_ROUTE = "malformed"

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)


class _RouteSeries:
    """One route's series: answered requests by status (with creation times), and its latency
    histogram as a count per bucket (not cumulative), the sum and the creation time."""

    __slots__ = ("buckets", "created", "requests", "requests_created", "total")

    def __init__(self, n_buckets: int) -> None:
        self.requests: dict[int, int] = {}
        self.requests_created: dict[int, float] = {}
        self.buckets = [0] * n_buckets
        self.total = 0.0
        self.created = time.time()


class RequestMetrics(Collector):
    """``http_requests_total{route,status}`` and ``http_request_duration_seconds{route}``.

    The same series prometheus-client's Counter and Histogram expose (``_created`` included),
    kept as plain numbers under one lock: theirs take a lock and a few method calls per
    counter and per bucket, ~3 µs of a ~40 µs request in the server (benchmarks/
    serve_throughput.py), this ~0.3 µs. Each route gets its own observer when the app is built,
    so a request finds its series without a lookup; routes are the app's own plus "unmatched"
    (bounded).
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        self._bounds = tuple(float(bound) for bound in buckets)
        self._lock = threading.Lock()
        self._routes: dict[str, _RouteSeries] = {}

    def observer(self, route: str) -> Callable[[int, float], None]:
        """The function that counts one answered request of ``route`` and its handling time."""
        with self._lock:
            series = self._routes.get(route)
            if series is None:
                series = self._routes[route] = _RouteSeries(len(self._bounds) + 1)
        lock, bounds, requests, buckets = self._lock, self._bounds, series.requests, series.buckets

        def observe(status: int, seconds: float) -> None:
            with lock:
                count = requests.get(status)
                if count is None:
                    count = 0
                    series.requests_created[status] = time.time()
                requests[status] = count + 1
                # Bucket i counts observations in (bound[i-1], bound[i]]; the last one above all.
                buckets[bisect_left(bounds, seconds)] += 1
                series.total += seconds

        return observe

    def describe(self) -> Iterable[Metric]:
        """The metric names, for the registry's duplicate check."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """Every series as it stands (a route's histogram from its first answered request)."""
        with self._lock:
            requests = [
                ((route, status), n, series.requests_created[status])
                for route, series in self._routes.items()
                for status, n in series.requests.items()
            ]
            timings = [
                (route, list(series.buckets), series.total, series.created)
                for route, series in self._routes.items()
                if series.requests
            ]
        return self._families(requests, timings)

    def _families(
        self,
        requests: Iterable[tuple[tuple[str, int], int, float]] = (),
        timings: Iterable[tuple[str, list[int], float, float]] = (),
    ) -> list[Metric]:
        counter = CounterMetricFamily(
            "http_requests",
            "HTTP requests answered, by route and status code.",
            labels=["route", "status"],
        )
        for (route, status), count, created in requests:
            counter.add_metric([route, str(status)], count, created=created)
        histogram = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Time from a request reaching the handlers to its response being ready, by route.",
            labels=["route"],
        )
        bounds = [*(floatToGoString(bound) for bound in self._bounds), "+Inf"]
        for route, buckets, total, created in timings:
            cumulative, running = [], 0
            for bound, count in zip(bounds, buckets, strict=True):
                running += count
                cumulative.append((bound, running))
            histogram.add_metric([route], cumulative, total)
            histogram.add_sample(f"{histogram.name}_created", {"route": route}, created)
        return [counter, histogram]


REQUESTS = RequestMetrics(
    # A recommendation takes ~0.1-1 ms; the tail reaches the wait for the first rules (5 s).
    (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
)
REGISTRY.register(REQUESTS)
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


def request_observer(route: str) -> Callable[[int, float], None]:
    """The function that counts one answered request of ``route`` (status, handling time)."""
    return REQUESTS.observer(route)


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
