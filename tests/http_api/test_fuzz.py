"""Fuzzing ``POST /api/recommend`` on a real server: no body, however odd, gets a 5xx.

The server runs on its own event loop thread (as under the HttpFrontend actor) and hypothesis
drives it over a keep-alive ``http.client`` connection: random bytes, random JSON of any
shape, and near misses of valid bodies built from the rule set's own song names.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from http_api.settings import Settings
from mining.limits import MAX_LIMIT
from mining.rulesfile import MiningParameters
from mining.version import __version__
from recommender.snapshot import Snapshot
from tests.helpers.gate import Gate
from tests.helpers.openapi import checked_app
from tests.helpers.rules import HeaderFields, build_ruleset, read_model, write_model

N_SONGS = 40
TRANSACTIONS = 500
NAMES = tuple(
    ["Señorita", "HUMBLE.", "Tyler, The Creator", "City Of Stars", "Ǆ  Spaced  Out "]
    + [f"Song {i}" for i in range(5, N_SONGS)]
)
MAX_QUERY_SONGS = 50
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def random_rules(rng: np.random.Generator) -> list[tuple[tuple[int, ...], int, int, int]]:
    """Distinct, consistent rules of antecedent length 1-4 (counts obey n ≥ count(A) ≥ count)."""
    rules: dict[tuple[tuple[int, ...], int], tuple[int, int]] = {}
    while len(rules) < 300:
        songs = rng.choice(N_SONGS, size=int(rng.integers(2, 6)), replace=False)
        antecedent, consequent = tuple(sorted(int(s) for s in songs[1:])), int(songs[0])
        antecedent_count = int(rng.integers(20, 100))
        rules[antecedent, consequent] = int(rng.integers(1, antecedent_count + 1)), antecedent_count
    return [(a, c, n, na) for (a, c), (n, na) in rules.items()]


def build_snapshot(directory: Path) -> Snapshot:
    """Random rules written and read back through the real rules file and checkpoint."""
    fields = HeaderFields(
        transactions=TRANSACTIONS,
        generated_ns=1_764_355_501_000_000_000,
        version=__version__,
        dataset_url="file:///fuzz.csv",
        parameters=MiningParameters(min_support=0.01, min_confidence=0.0, max_len=5),
    )
    counts = np.arange(N_SONGS * 10, 0, -10, dtype=np.uint32)
    rules = random_rules(np.random.default_rng(7))
    write_model(directory, build_ruleset(NAMES, counts, rules, fields))
    return read_model(directory)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real server on its own event loop thread, as the HttpFrontend actor runs it."""
    snapshot = build_snapshot(tmp_path_factory.mktemp("rules"))
    app_settings = Settings(max_query_songs=MAX_QUERY_SONGS, max_body_bytes=64 * 1024)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(checked_app(Gate(snapshot), app_settings))
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="fuzz-server")
    thread.start()
    assert started.wait(10)
    yield runner.addresses[0][1]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def connection(port: int) -> Iterator[http.client.HTTPConnection]:
    """One keep-alive connection (http.client reopens it after a Connection: close)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    yield conn
    conn.close()


def post(
    conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, object]:
    """POST a body; return the status and the decoded JSON answer (which must be JSON)."""
    conn.request("POST", "/api/recommend", body=body, headers=headers or {})
    response = conn.getresponse()
    raw = response.read()
    assert response.getheader("Content-Type", "").startswith("application/json"), raw[:200]
    return response.status, json.loads(raw)


def check_answer(status: int, answer: object, limit: object = None) -> None:
    """Either a recommendation of the contract's shape or a 4xx naming the error; never a 5xx."""
    assert status in (200, 400, 413), (status, answer)
    assert isinstance(answer, dict)
    if status == 200:
        assert answer["version"] == __version__
        assert answer["model_date"] == "2025-11-28 18:45:01.000000"
        songs = answer["songs"]
        most = limit if isinstance(limit, int) and not isinstance(limit, bool) else 10
        # Fewer only when the query and the answer together exhaust the song table.
        assert len(songs) <= most
        assert set(songs) <= set(NAMES) and len(set(songs)) == len(songs)
    else:
        assert isinstance(answer["error"], str) and answer["error"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(NAMES),
    lambda children: (
        st.lists(children, max_size=8)
        | st.dictionaries(st.sampled_from(["songs", "limit"]) | st.text(max_size=8), children)
    ),
    max_leaves=30,
)


def variants(name: str) -> st.SearchStrategy[str]:
    """A known name, or one differing from it in case, normal form, whitespace or one char."""
    return st.sampled_from(
        [
            name,
            name.upper(),
            name.lower(),
            f"  {name}\t",
            unicodedata.normalize("NFD", name),
            name[:-1],
            name + "\u0301",
            name.replace(" ", "\u00a0"),
        ]
    )


song_items = (
    st.sampled_from(NAMES).flatmap(variants)
    | st.text(max_size=40)
    | st.integers()
    | st.none()
    | st.lists(st.sampled_from(NAMES), max_size=2)
)
limits = (
    st.integers(-2, MAX_LIMIT + 2)
    | st.integers(1, MAX_LIMIT)
    | st.booleans()
    | st.floats()
    | st.none()
    | st.text(max_size=3)
    | st.integers(min_value=2**63, max_value=2**200)
)


@st.composite
def near_miss_bodies(draw: st.DrawFn) -> tuple[dict[str, object], object]:
    """Bodies that are valid or one mistake away: odd items, limits, extra or missing fields."""
    document: dict[str, object] = {}
    if draw(st.integers(0, 9)):
        document["songs"] = draw(
            st.lists(song_items, max_size=MAX_QUERY_SONGS + 3)
            | st.lists(st.sampled_from(NAMES).flatmap(variants), min_size=1, max_size=8)
            | json_values
        )
    limit = draw(limits)
    if draw(st.booleans()):
        document["limit"] = limit
    if not draw(st.integers(0, 4)):
        document[draw(st.text(max_size=8))] = draw(json_values)
    return document, document.get("limit")


@FUZZ
@given(body=st.binary(max_size=500))
def test_random_bytes_never_get_a_5xx(connection: http.client.HTTPConnection, body: bytes) -> None:
    status, answer = post(connection, body)
    check_answer(status, answer)


@FUZZ
@given(value=json_values, ascii_only=st.booleans())
def test_random_json_never_gets_a_5xx(
    connection: http.client.HTTPConnection, value: object, ascii_only: bool
) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    status, answer = post(connection, body)
    limit = value.get("limit") if isinstance(value, dict) else None
    check_answer(status, answer, limit)


@FUZZ
@given(
    case=near_miss_bodies(),
    content_type=st.sampled_from(
        [None, "application/json", "text/plain", "application/x-www-form-urlencoded", "a/b"]
    ),
    compress=st.booleans(),
)
def test_near_miss_bodies_never_get_a_5xx(
    connection: http.client.HTTPConnection,
    case: tuple[dict[str, object], object],
    content_type: str | None,
    compress: bool,
) -> None:
    document, limit = case
    body = json.dumps(document).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    if compress:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    status, answer = post(connection, body, headers)
    check_answer(status, answer, limit)


def test_a_valid_near_miss_is_answered(connection: http.client.HTTPConnection) -> None:
    status, answer = post(connection, json.dumps({"songs": ["  señorita "], "limit": 3}).encode())
    check_answer(status, answer, 3)
    assert status == 200 and "Señorita" not in answer["songs"]  # type: ignore[index]
