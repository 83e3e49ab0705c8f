"""Prometheus metrics of the server: requests and latency (handlers), rule reloads (actors).

One registry per process, module-level, because the actors (on their own threads) and the
handlers (on the event loop) record into the same series; prometheus-client is thread-safe.
The RuleServer reports its loads through :data:`REPORTER` (the serving core's
``LoadReporter``, handed to the actors by ``python -m http_api``); the ``/metrics`` handler
calls :func:`show_snapshot` with what it actually serves, then :func:`render`.
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

from mining.version import __version__

if TYPE_CHECKING:
    from recommender.snapshot import Snapshot

# Requests that matched no route share one label, so random paths cannot grow the series.
UNMATCHED_ROUTE = "unmatched"
# Requests refused before routing (unparsable, or a target that is not a path) share another.
MALFORMED_ROUTE = "malformed"

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)


# The methods a client can get its own series for; anything else counts as "other", so a client
# inventing methods cannot grow the series.
KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
OTHER_METHOD = "other"
# The method of a route that answers them all (the 405 and 404 routes).
ANY_METHOD = "*"
# Handling times run from microseconds (a health check, a small recommendation) to the wait for the
# first rules (RULES_WAIT_SECONDS, 5 s by default): a 1-2.5-5 ladder over that whole range, so
# histogram_quantile() resolves the usual tens of µs as well as the seconds-long tail.
LATENCY_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class _Series:
    """One route's and method's series: answered requests by status code (with creation
    times), and its latency histogram as a count per bucket (not cumulative), the sum and the
    creation time."""

    __slots__ = ("buckets", "created", "requests", "requests_created", "total")

    def __init__(self, n_buckets: int) -> None:
        self.requests: dict[int, int] = {}
        self.requests_created: dict[int, float] = {}
        self.buckets = [0] * n_buckets
        self.total = 0.0
        self.created = time.time()


class RequestMetrics(Collector):
    """``http_requests_total{route,method,code}`` and
    ``http_request_duration_seconds{route,method}``.

    The labels of Prometheus' own HTTP instrumentation (``code``, ``method``) plus ``route``,
    the path template that answered. The same series prometheus-client's Counter and Histogram
    expose (``_created`` included), kept as plain numbers under one lock: theirs take a lock and
    a few method calls per counter and per bucket, a visible share of a request's CPU in the
    server (benchmarks/serve_throughput.py measures it), this a tenth of that. Each route and
    method gets its own observer when the app is built, so a request finds its series without a
    lookup (only the 405 and 404 routes, which answer every method, look the method up); routes
    are the app's own plus "unmatched", methods the known ones plus "other" (bounded).
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        self._bounds = tuple(float(bound) for bound in buckets)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}

    def observer(self, route: str, method: str) -> Callable[[str, int, float], None]:
        """The function that counts one answered request of ``route`` (its method, status code
        and handling time). ``method`` is the one the route answers, or ``ANY_METHOD`` for a
        route answering every method (a 405 or 404), whose requests are told apart by their own.
        """
        if method != ANY_METHOD:
            return self._counter(route, method)
        counters: dict[str, Callable[[str, int, float], None]] = {}

        def observe(request_method: str, code: int, seconds: float) -> None:
            count = counters.get(request_method)
            if count is None:
                # An invented method counts as "other" and is not kept here, so it stays bounded.
                if request_method not in KNOWN_METHODS:
                    self._counter(route, OTHER_METHOD)(request_method, code, seconds)
                    return
                count = counters[request_method] = self._counter(route, request_method)
            count(request_method, code, seconds)

        return observe

    def _counter(self, route: str, method: str) -> Callable[[str, int, float], None]:
        """The function counting requests into the series of ``route`` and ``method``."""
        lock, bounds = self._lock, self._bounds
        with lock:
            series = self._series.get((route, method))
            if series is None:
                series = self._series[route, method] = _Series(len(bounds) + 1)
        requests, created, buckets = series.requests, series.requests_created, series.buckets

        def observe(_method: str, code: int, seconds: float) -> None:
            with lock:
                count = requests.get(code)
                if count is None:
                    count = 0
                    created[code] = time.time()
                requests[code] = count + 1
                # Bucket i counts observations in (bound[i-1], bound[i]]; the last one above all.
                buckets[bisect_left(bounds, seconds)] += 1
                series.total += seconds

        return observe

    def describe(self) -> Iterable[Metric]:
        """The metric names, for the registry's duplicate check."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """Every series as it stands (a histogram from its first answered request)."""
        with self._lock:
            requests = [
                ((route, method, code), n, series.requests_created[code])
                for (route, method), series in self._series.items()
                for code, n in series.requests.items()
            ]
            timings = [
                ((route, method), list(series.buckets), series.total, series.created)
                for (route, method), series in self._series.items()
                if series.requests
            ]
        return self._families(requests, timings)

    def _families(
        self,
        requests: Iterable[tuple[tuple[str, str, int], int, float]] = (),
        timings: Iterable[tuple[tuple[str, str], list[int], float, float]] = (),
    ) -> list[Metric]:
        counter = CounterMetricFamily(
            "http_requests",
            "HTTP requests answered, by route, method and status code.",
            labels=["route", "method", "code"],
        )
        for (route, method, code), count, created in requests:
            counter.add_metric([route, method, str(code)], count, created=created)
        histogram = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Time from a request reaching the handlers to its response being ready, by route "
            "and method.",
            labels=["route", "method"],
        )
        bounds = [*(floatToGoString(bound) for bound in self._bounds), "+Inf"]
        for (route, method), buckets, total, created in timings:
            cumulative, running = [], 0
            for bound, count in zip(bounds, buckets, strict=True):
                running += count
                cumulative.append((bound, running))
            histogram.add_metric([route, method], cumulative, total)
            histogram.add_sample(
                f"{histogram.name}_created", {"route": route, "method": method}, created
            )
        return [counter, histogram]


REQUESTS = RequestMetrics(LATENCY_BUCKETS)
REGISTRY.register(REQUESTS)
BUILD_INFO = Gauge(
    "playlist_recommender_build_info",
    "Always 1; the version label is the running package's.",
    labelnames=["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(__version__).set(1)
READY = Gauge(
    "recommender_ready",
    "1 when /readyz answers 200 (rules loaded, not draining), else 0.",
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


def request_observer(route: str, method: str) -> Callable[[str, int, float], None]:
    """The function that counts one answered request of ``route`` answering ``method``
    (``ANY_METHOD``: every method), given its method, status code and handling time."""
    return REQUESTS.observer(route, method)


def show_snapshot(snapshot: Snapshot | None, *, draining: bool = False) -> None:
    """Set the rule-set gauges to describe ``snapshot`` (None: nothing loaded) and the
    readiness gauge to what /readyz answers."""
    READY.set(snapshot is not None and not draining)
    if snapshot is None:
        RULES_LOADED.set(0)
        SONGS_LOADED.set(0)
        MODEL_GENERATED.set(0)
        return
    RULES_LOADED.set(snapshot.header.rule_count)
    SONGS_LOADED.set(snapshot.header.song_count)
    MODEL_GENERATED.set(snapshot.generated_ns / 1e9)


class MetricsReporter:
    """The RuleServer's ``recommender.reporting.LoadReporter``: loads counted in these metrics."""

    def load_succeeded(self, snapshot: Snapshot) -> None:
        """Count a successful reload (after the swap) and show the rule set now served."""
        RELOADS.inc()
        show_snapshot(snapshot)

    def load_failed(self) -> None:
        """Count a failed load attempt (the RuleServer keeps the old snapshot)."""
        RELOAD_FAILURES.inc()


REPORTER = MetricsReporter()


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of every metric, and its Content-Type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
