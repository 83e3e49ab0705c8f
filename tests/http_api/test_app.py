"""The HTTP application against a real server on loopback: contract, errors, draining, metrics.

The gate is a plain test double of the HttpFrontend actor (the actors' own tests run them end
to end); the snapshots are built from rules written and read back through mining.rulesfile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import prometheus_client
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from http_api import metrics
from http_api.settings import Settings
from mining.version import __version__
from recommender.snapshot import Snapshot
from tests.helpers.gate import Gate
from tests.helpers.openapi import checked_app
from tests.helpers.rules import HeaderFields, Rule, build_ruleset, read_model, write_model

SONGS = ("HUMBLE.", "DNA.", "Tyler, The Creator", "Ünïcödé", "City Of Stars", "plain")
COUNTS = (95, 90, 80, 70, 60, 50)
# (antecedent ids, consequent id, count(A ∪ c), count(A)) over 100 playlists.
RULES: list[Rule] = [
    ((0,), 1, 72, 95),  # HUMBLE. → DNA.                confidence 0.758
    ((0,), 2, 76, 95),  # HUMBLE. → Tyler, The Creator    0.8
    ((0, 3), 4, 63, 70),  # HUMBLE., Ünïcödé → City Of Stars  0.9
    ((1,), 0, 81, 90),  # DNA. → HUMBLE.                  0.9
]
FIRST_NS = 1_700_000_000_123_456_789
SECOND_NS = 1_764_355_501_987_654_321
SETTINGS = Settings(rules_wait_seconds=5.0, max_query_songs=1000, max_body_bytes=1024 * 1024)


def build_snapshot(directory: Path, generated_ns: int) -> Snapshot:
    """Write the rules and checkpoint as the miner would, read them back, index them."""
    fields = HeaderFields(
        generated_ns=generated_ns, version=__version__, dataset_url="file:///data/playlists.csv"
    )
    write_model(directory, build_ruleset(SONGS, COUNTS, RULES, fields))
    return read_model(directory)


Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start a real server on a free loopback port; returns its base URL."""
    servers: list[TestServer] = []

    async def _start(gate: Gate, settings: Settings = SETTINGS) -> str:
        server = TestServer(checked_app(gate, settings), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield _start
    for server in servers:
        await server.close()


@pytest.fixture
async def http() -> AsyncIterator[ClientSession]:
    """A client session (keep-alive, like a real client)."""
    async with ClientSession() as session:
        yield session


@pytest.fixture
def snapshot(tmp_path: Path) -> Snapshot:
    """The first rule set."""
    return build_snapshot(tmp_path / "first", FIRST_NS)


async def post_json(http: ClientSession, url: str, document: object) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{url}/api/recommend", json=document) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def raw_request(
    url: str, request: bytes, *, then: bytes | None = None
) -> tuple[int, dict[str, str], bytes, bool | None]:
    """Send raw bytes; return status, headers, body and whether the connection was closed.

    "Closed" is known only with ``then``: a second request sent on the same connection after
    the answer, which a closed connection leaves unanswered.
    """
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        status, headers, body = await read_response(reader)
        closed = None
        if then is not None:
            writer.write(then)
            await writer.drain()
            try:
                await read_response(reader)
                closed = False
            except asyncio.IncompleteReadError:
                closed = True
        return status, headers, body, closed
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value
        for name, _, value in (line.partition(": ") for line in header_lines if line)
    }
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


def http_post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def test_recommend_answers_the_rules_with_version_and_model_date(
    start: Start, http: ClientSession, snapshot: Snapshot
) -> None:
    url = await start(Gate(snapshot))
    status, answer = await post_json(http, url, {"songs": ["HUMBLE."], "limit": 3})
    assert status == 200
    # Rule-based by confidence (0.8, 0.758), then the most popular song not yet listed.
    assert answer == {
        "songs": ["Tyler, The Creator", "DNA.", "Ünïcödé"],
        "version": __version__,
        "model_date": "2023-11-14 22:13:20.123456",
        "from_rules": 2,
        "unknown": [],
    }
    status, answer = await post_json(http, url, {"songs": [" humble. ", "ÜNÏCÖDÉ"], "limit": 2})
    assert (status, answer["songs"]) == (200, ["City Of Stars", "Tyler, The Creator"])
    status, answer = await post_json(http, url, {"songs": ["not a known song"]})
    assert status == 200
    assert answer["songs"] == list(SONGS)  # all popular fill, most popular first
    status, answer = await post_json(http, url, {"songs": ["DNA.", "DNA."], "limit": 1})
    assert (status, answer["songs"]) == (200, ["HUMBLE."])


async def test_the_answer_says_how_many_songs_came_from_rules_and_which_songs_are_unknown(
    start: Start, snapshot: Snapshot
) -> None:
    url = await start(Gate(snapshot))
    unknown = ['not "here"', "Ünknown\u2028", "x" * 1000]
    document = {"songs": ["HUMBLE.", *unknown, unknown[0], "dna."], "limit": 4}
    request = http_post("/api/recommend", json.dumps(document).encode())
    status, _, body, _ = await raw_request(url, request)
    answer = json.loads(body)
    assert status == 200
    # One rule-based song (the others' rules give songs in the query), then the fill; the
    # unknown songs once each, in request order.
    assert answer["songs"] == ["Tyler, The Creator", "Ünïcödé", "City Of Stars", "plain"]
    assert (answer["from_rules"], answer["unknown"]) == (1, unknown)
    # Written as json.dumps writes it, like every other answer.
    assert body == json.dumps(answer).encode()
    for songs, from_rules in ((["plain"], 0), (["DNA."], 1), (["HUMBLE.", "Ünïcödé"], 3)):
        request = http_post("/api/recommend", json.dumps({"songs": songs, "limit": 3}).encode())
        status, _, body, _ = await raw_request(url, request)
        answer = json.loads(body)
        assert (status, answer["from_rules"], answer["unknown"]) == (200, from_rules, [])
        assert body == json.dumps(answer).encode()


async def test_ranking_is_the_servers_setting(start: Start, tmp_path: Path) -> None:
    # HUMBLE. → Tyler 0.8 is the best rule; "plain" has two weaker ones, 0.6 + 0.5 = 1.1.
    more: list[Rule] = [((0,), 5, 57, 95), ((1,), 5, 45, 90)]
    fields = HeaderFields(version=__version__, dataset_url="file:///data/playlists.csv")
    write_model(tmp_path, build_ruleset(SONGS, COUNTS, RULES + more, fields))
    gate = Gate(read_model(tmp_path))
    query = {"songs": ["HUMBLE.", "DNA."], "limit": 2}
    async with ClientSession() as http:
        for ranking, expected in (
            ("best", ["Tyler, The Creator", "plain"]),
            ("sum", ["plain", "Tyler, The Creator"]),
        ):
            url = await start(gate, dataclasses.replace(SETTINGS, ranking=ranking))
            status, answer = await post_json(http, url, query)
            assert (status, answer["songs"], answer["from_rules"]) == (200, expected, 2)


async def test_content_type_is_not_required(start: Start, snapshot: Snapshot) -> None:
    url = await start(Gate(snapshot))
    request = http_post("/api/recommend", b'{"songs": ["DNA."], "limit": 1}', "")
    status, headers, body, _ = await raw_request(url, request)
    assert (status, json.loads(body)["songs"]) == (200, ["HUMBLE."])
    assert headers["content-type"].startswith("application/json")
    text_plain = http_post("/api/recommend", b'{"songs": ["DNA."]}', "Content-Type: text/plain\r\n")
    assert (await raw_request(url, text_plain))[0] == 200


async def test_gzip_request_bodies_are_accepted_and_broken_ones_are_a_400(
    start: Start, snapshot: Snapshot
) -> None:
    url = await start(Gate(snapshot))
    packed = gzip.compress(b'{"songs": ["DNA."], "limit": 1}')
    status, _, body, _ = await raw_request(
        url, http_post("/api/recommend", packed, "Content-Encoding: gzip\r\n")
    )
    assert (status, json.loads(body)["songs"]) == (200, ["HUMBLE."])
    status, _, body, _ = await raw_request(
        url, http_post("/api/recommend", b"not gzip at all", "Content-Encoding: gzip\r\n")
    )
    assert status == 400
    assert json.loads(body)["error"] == "body is not valid gzip data"


async def test_healthz_never_depends_on_rules_and_readyz_does(
    start: Start, http: ClientSession, snapshot: Snapshot
) -> None:
    gate = Gate()
    url = await start(gate)
    async with http.get(f"{url}/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    async with http.get(f"{url}/readyz") as response:
        assert response.status == 503
        assert await response.json() == {"ready": False, "reason": "no rules loaded yet"}
    gate.publish(snapshot)
    async with http.get(f"{url}/readyz") as response:
        assert response.status == 200
        assert await response.json() == {
            "ready": True,
            "model_date": "2023-11-14 22:13:20.123456",
            "rules": len(RULES),
            "songs": len(SONGS),
        }


async def test_a_request_before_any_rules_is_held_and_answered_when_they_arrive(
    start: Start, http: ClientSession, snapshot: Snapshot
) -> None:
    gate = Gate()
    url = await start(gate)
    pending = asyncio.ensure_future(post_json(http, url, {"songs": ["DNA."], "limit": 1}))
    while gate.waits == 0:
        await asyncio.sleep(0.01)
    assert not pending.done()
    gate.publish(snapshot)
    status, answer = await asyncio.wait_for(pending, 5)
    assert (status, answer["songs"]) == (200, ["HUMBLE."])


async def test_no_rules_within_the_wait_budget_is_a_503_with_retry_after(
    start: Start, http: ClientSession
) -> None:
    url = await start(Gate(), Settings(rules_wait_seconds=0.2))
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with http.post(f"{url}/api/recommend", json={"songs": ["DNA."]}) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert "no rules loaded yet" in (await response.json())["error"]
    assert 0.2 <= loop.time() - began < 2


async def test_bad_input_is_refused_before_waiting_for_rules(
    start: Start, http: ClientSession
) -> None:
    gate = Gate()
    url = await start(gate, Settings(rules_wait_seconds=30))
    status, answer = await post_json(http, url, {"songs": []})
    assert (status, gate.waits) == (400, 0)
    assert "empty" in answer["error"]


async def test_a_new_snapshot_is_served_from_the_next_request(
    start: Start, http: ClientSession, snapshot: Snapshot, tmp_path: Path
) -> None:
    gate = Gate(snapshot)
    url = await start(gate)
    assert (await post_json(http, url, {"songs": ["DNA."]}))[1]["model_date"] == (
        "2023-11-14 22:13:20.123456"
    )
    gate.publish(build_snapshot(tmp_path / "second", SECOND_NS))
    assert (await post_json(http, url, {"songs": ["DNA."]}))[1]["model_date"] == (
        "2025-11-28 18:45:01.987654"
    )


async def test_draining_turns_readyz_503_and_closes_every_connection(
    start: Start, snapshot: Snapshot
) -> None:
    gate = Gate(snapshot)
    url = await start(gate)
    recommend = http_post("/api/recommend", b'{"songs": ["DNA."]}')
    get_readyz = b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"
    get_healthz = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    status, headers, _, closed = await raw_request(url, recommend, then=get_healthz)
    assert (status, headers.get("connection"), closed) == (200, None, False)

    gate.draining = True
    status, headers, body, closed = await raw_request(url, recommend, then=get_healthz)
    assert (status, headers["connection"], closed) == (200, "close", True)
    assert json.loads(body)["songs"][0] == "HUMBLE."
    status, headers, body, closed = await raw_request(url, get_readyz, then=get_healthz)
    assert (status, headers["connection"], closed) == (503, "close", True)
    assert json.loads(body) == {"ready": False, "reason": "draining"}
    status, headers, _, closed = await raw_request(url, get_healthz, then=get_healthz)
    assert (status, headers["connection"], closed) == (200, "close", True)


BIG = json.dumps({"songs": ["x" * 900] * 2400}).encode()  # 2.2 MB, valid JSON


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (b"songs=DNA.", 400, "not valid JSON"),
        (b"", 400, "not valid JSON"),
        (b'["DNA."]', 400, "must be a JSON object"),
        (b'{"limit": 3}', 400, '"songs" is missing'),
        (b'{"songs": "DNA."}', 400, '"songs" must be a list'),
        (b'{"songs": ["DNA.", 7]}', 400, '"songs"[1] must be a string'),
        (b'{"songs": []}', 400, '"songs" is empty'),
        (json.dumps({"songs": [f"s{i}" for i in range(10_000)]}).encode(), 400, "maximum is 1000"),
        (json.dumps({"songs": ["y" * 1001]}).encode(), 400, "the maximum is 1000"),
        (b'{"songs": ["caf\xe9"]}', 400, "not valid UTF-8"),
        (b'{"songs": ["DNA."], "limit": 0}', 400, '"limit" must be from 1 to 100'),
        (b'{"songs": ["DNA."], "limit": 101}', 400, '"limit" must be from 1 to 100'),
        (b'{"songs": ["DNA."], "limit": true}', 400, '"limit" must be an integer'),
        (b'{"songs": ["DNA."], "limit": "3"}', 400, '"limit" must be an integer'),
        (BIG, 413, "larger than 1048576 bytes"),
    ],
)
async def test_each_bad_input_is_a_4xx_with_a_json_message(
    start: Start, snapshot: Snapshot, body: bytes, status: int, expected: str
) -> None:
    url = await start(Gate(snapshot))
    got, headers, answer, _ = await raw_request(url, http_post("/api/recommend", body))
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert expected in json.loads(answer)["error"]


async def test_a_chunked_body_over_the_limit_is_a_413(start: Start, snapshot: Snapshot) -> None:
    url = await start(Gate(snapshot))
    chunk = b"[" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(32)) + b"0\r\n\r\n"
    head = b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    then = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    status, _, body, closed = await raw_request(url, head + chunks, then=then)
    assert (status, closed) == (413, True)
    assert json.loads(body) == {"error": "request body is larger than 1048576 bytes"}


async def test_wrong_method_and_unknown_path_are_json_405_and_404(
    start: Start, http: ClientSession, snapshot: Snapshot
) -> None:
    url = await start(Gate(snapshot))
    async with http.get(f"{url}/api/recommend") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["error"] == "method GET is not allowed here; use POST"
    async with http.put(f"{url}/healthz") as response:
        assert response.status == 405
        assert "not allowed" in (await response.json())["error"]
    async with http.post(f"{url}/api/recommendations", json={"songs": ["DNA."]}) as response:
        assert response.status == 404
        assert "no such endpoint" in (await response.json())["error"]


async def test_the_page_and_its_autocomplete_are_served_by_the_same_app(
    start: Start, http: ClientSession, snapshot: Snapshot
) -> None:
    url = await start(Gate(snapshot))
    async with http.get(f"{url}/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
    async with http.get(f"{url}/api/songs", params={"q": "hum"}) as response:
        assert response.status == 200
        assert (await response.json())["songs"] == ["HUMBLE."]


async def test_a_bug_in_a_handler_is_a_json_500(start: Start, snapshot: Snapshot) -> None:
    # A snapshot without a recommender makes the handler raise, as a genuine bug would.
    broken = Snapshot(checkpoint=snapshot.checkpoint, header=snapshot.header, recommender=None)  # type: ignore[arg-type]
    url = await start(Gate(broken))
    before = sample("http_requests_total", route="/api/recommend", method="POST", code="500")
    status, _, body, _ = await raw_request(url, http_post("/api/recommend", b'{"songs": ["a"]}'))
    assert (status, json.loads(body)) == (500, {"error": "internal server error"})
    assert sample("http_requests_total", route="/api/recommend", method="POST", code="500") == (
        before + 1
    )


def sample(name: str, **labels: str) -> float:
    """The current value of one series in the server's registry (0 when absent)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_requests_and_describe_the_rules(
    start: Start, http: ClientSession, snapshot: Snapshot
) -> None:
    gate = Gate()
    url = await start(gate)
    recommend = {"route": "/api/recommend", "method": "POST"}
    ok = sample("http_requests_total", **recommend, code="200")
    bad = sample("http_requests_total", **recommend, code="400")
    unmatched = sample("http_requests_total", route="unmatched", method="GET", code="404")
    refused = sample("http_requests_total", route="/healthz", method="PUT", code="405")
    timed = sample("http_request_duration_seconds_count", **recommend)
    reloads = sample("recommender_rule_reloads_total")
    failures = sample("recommender_rule_reload_failures_total")

    async with http.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert re.search(r"^recommender_rules_loaded 0\.0$", text, re.MULTILINE)
    assert re.search(r"^recommender_ready 0\.0$", text, re.MULTILINE)
    assert f'playlist_recommender_build_info{{version="{__version__}"}} 1.0\n' in text

    gate.publish(snapshot)
    metrics.REPORTER.load_succeeded(snapshot)
    metrics.REPORTER.load_failed()
    for _ in range(3):
        assert (await post_json(http, url, {"songs": ["DNA."]}))[0] == 200
    assert (await post_json(http, url, {"songs": 5}))[0] == 400
    async with http.get(f"{url}/{'x' * 50}") as response:
        assert response.status == 404
    async with http.put(f"{url}/healthz") as response:
        assert response.status == 405

    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    assert re.search(r"^recommender_rules_loaded 4\.0$", text, re.MULTILINE)
    assert re.search(r"^recommender_songs_loaded 6\.0$", text, re.MULTILINE)
    assert re.search(r"^recommender_ready 1\.0$", text, re.MULTILINE)
    assert re.search(
        r"^recommender_model_generated_timestamp_seconds 1\.70000000012345\d*e\+09$",
        text,
        re.MULTILINE,
    )
    assert "process_resident_memory_bytes" in text
    assert sample("http_requests_total", **recommend, code="200") == ok + 3
    assert sample("http_requests_total", **recommend, code="400") == bad + 1
    assert sample("http_requests_total", route="unmatched", method="GET", code="404") == (
        unmatched + 1
    )
    assert sample("http_requests_total", route="/healthz", method="PUT", code="405") == refused + 1
    assert sample("http_request_duration_seconds_count", **recommend) == timed + 4
    assert sample("recommender_rule_reloads_total") == reloads + 1
    assert sample("recommender_rule_reload_failures_total") == failures + 1

    gate.draining = True
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    assert re.search(r"^recommender_ready 0\.0$", text, re.MULTILINE)


async def test_invented_methods_share_one_series(start: Start, snapshot: Snapshot) -> None:
    url = await start(Gate(snapshot))
    before = sample("http_requests_total", route="/healthz", method="other", code="405")
    # (aiohttp's parser knows some 40 methods and answers 400 to any other.)
    for method in ("PROPFIND", "MKCOL", "PURGE"):
        request = f"{method} /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        status, headers, _, _ = await raw_request(url, request.encode())
        assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert sample("http_requests_total", route="/healthz", method="other", code="405") == (
        before + 3
    )
    assert sample("http_requests_total", route="/healthz", method="PURGE", code="405") == 0


async def test_latency_buckets_resolve_requests_of_tens_of_microseconds(
    start: Start, http: ClientSession, snapshot: Snapshot
) -> None:
    url = await start(Gate(snapshot))
    labels = {"route": "/healthz", "method": "GET"}

    def buckets() -> dict[float, float]:
        return {
            bound: sample("http_request_duration_seconds_bucket", **labels, le=str(bound))
            for bound in metrics.LATENCY_BUCKETS
        }

    before = buckets()
    for _ in range(200):
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
    counts = {bound: n - before[bound] for bound, n in buckets().items()}
    # A health check takes tens of µs: the ladder starts below that, so the bulk of them is
    # not all in the first bucket (the old first bucket was 500 µs), and all are under 1 s.
    assert metrics.LATENCY_BUCKETS[0] <= 1e-5
    assert counts[metrics.LATENCY_BUCKETS[0]] < 200
    assert counts[0.001] > 0
    assert counts[1.0] == 200


async def test_max_body_bytes_bounds_both_sized_and_chunked_bodies(start: Start) -> None:
    url = await start(Gate(), Settings(max_body_bytes=4096, rules_wait_seconds=0))
    body = json.dumps({"songs": ["z" * 100] * 41}).encode()
    assert len(body) > 4096
    expected = {"error": "request body is larger than 4096 bytes"}
    status, _, answer, _ = await raw_request(url, http_post("/api/recommend", body))
    assert (status, json.loads(answer)) == (413, expected)
    head = b"POST /api/recommend HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    status, _, answer, _ = await raw_request(url, chunked)
    assert (status, json.loads(answer)) == (413, expected)


async def test_a_compressed_body_is_bounded_by_its_decompressed_size(start: Start) -> None:
    url = await start(Gate(), Settings(max_body_bytes=4096, rules_wait_seconds=0))
    body = json.dumps({"songs": ["z" * 100] * 41}).encode()
    packed = gzip.compress(body)
    assert len(packed) < 4096 < len(body)
    request = http_post("/api/recommend", packed, "Content-Encoding: gzip\r\n")
    status, _, answer, _ = await raw_request(url, request)
    assert (status, json.loads(answer)) == (
        413,
        {"error": "request body is larger than 4096 bytes"},
    )


def test_request_series_are_exposed_as_prometheus_clients_own_would_be() -> None:
    started = time.time()
    # The same observations through our RequestMetrics and through prometheus-client's
    # Counter and Histogram: equal samples (bucket edges included), creation times aside.
    buckets = (0.001, 0.01, 0.1, 1.0)
    ours = metrics.RequestMetrics(buckets)
    theirs = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter(
        "http_requests", "d", ["route", "method", "code"], registry=theirs
    )
    histogram = prometheus_client.Histogram(
        "http_request_duration_seconds", "d", ["route", "method"], buckets=buckets, registry=theirs
    )
    rng = np.random.default_rng(3)
    edges = [*buckets, 0.0, 5.0, 1e-9]
    for i in range(400):
        route = ("/api/recommend", "/healthz", metrics.UNMATCHED_ROUTE)[i % 3]
        method = ("GET", "POST", "HEAD")[i % 5 % 3]
        status = (200, 400, 404)[int(rng.integers(3))]
        seconds = edges[i % len(edges)] if i % 4 == 0 else float(rng.exponential(0.01))
        ours.observer(route, metrics.ANY_METHOD)(method, status, seconds)
        counter.labels(route, method, str(status)).inc()
        histogram.labels(route, method).observe(seconds)

    def samples(families: Iterable[prometheus_client.Metric]) -> dict[tuple[str, str], float]:
        return {
            (s.name, json.dumps(s.labels, sort_keys=True)): s.value
            for family in families
            for s in family.samples
            if not s.name.endswith("_created")
        }

    assert samples(ours.collect()) == samples(theirs.collect())
    created = {
        (s.name, json.dumps(s.labels, sort_keys=True)): s.value
        for family in ours.collect()
        for s in family.samples
        if s.name.endswith("_created")
    }
    expected = {
        (s.name, json.dumps(s.labels, sort_keys=True))
        for family in theirs.collect()
        for s in family.samples
        if s.name.endswith("_created")
    }
    assert set(created) == expected
    assert all(started <= value <= time.time() for value in created.values())
