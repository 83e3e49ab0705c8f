"""``GET /api/songs`` and the page's files, against a real server on loopback."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import ClientSession

from http_api.settings import Settings
from http_api.web import MAX_QUERY_CHARS, MAX_SONGS_LIMIT
from mining.rulesfile import MiningParameters
from mining.version import __version__
from recommender.snapshot import Snapshot
from tests.helpers.gate import Gate, serve
from tests.helpers.rules import HeaderFields, build_ruleset, snapshot_of

GENERATED_NS = 1_764_355_501_123_456_789
MODEL_DATE = "2025-11-28 18:45:01.123456"
TRANSACTIONS = 100
# (name, playlist count): prefix and substring matches, case and accents, and ties.
SONGS = (
    ("Shape of You", 70),
    ("Mr. Brightside", 60),
    ("Blinding Lights", 55),
    ("Señorita", 50),
    ("HUMBLE.", 45),
    ("Someone Like You", 40),
    ("Bright Lights", 30),
    ("Lights Up", 25),
    ("Humble and Kind", 20),
    ("Brightest Star", 10),
)
NAMES = [name for name, _ in SONGS]


def song_id(name: str) -> int:
    """The id of a song in SONGS."""
    return NAMES.index(name)


def build_snapshot() -> Snapshot:
    """A snapshot over SONGS with a few rules, built with the real rules-file packer."""
    rules = [
        ((song_id("Mr. Brightside"),), song_id("Blinding Lights"), 48, 60),
        ((song_id("Señorita"),), song_id("Shape of You"), 40, 50),
        ((song_id("Mr. Brightside"), song_id("Señorita")), song_id("HUMBLE."), 18, 20),
    ]
    fields = HeaderFields(
        transactions=TRANSACTIONS,
        generated_ns=GENERATED_NS,
        version=__version__,
        dataset_url="file:///test/playlists.csv",
        parameters=MiningParameters(min_support=0.1, min_confidence=0.7, max_len=8),
    )
    return snapshot_of(build_ruleset(NAMES, [count for _, count in SONGS], rules, fields))


@dataclass
class Server:
    """A running app on 127.0.0.1 and a client session for it."""

    url: str
    session: ClientSession
    gate: Gate

    async def get(self, path: str, **params: str) -> tuple[int, dict[str, str], object]:
        """GET ``path`` and return status, headers and the decoded JSON body."""
        async with self.session.get(self.url + path, params=params) as response:
            return response.status, dict(response.headers), await response.json()


async def start(gate: Gate) -> AsyncIterator[Server]:
    """Serve the app on a free loopback port for the duration of a test."""
    async with serve(gate, Settings(rules_wait_seconds=0.2)) as url, ClientSession() as session:
        yield Server(url, session, gate)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A server whose rules are loaded."""
    async for running in start(Gate(build_snapshot())):
        yield running


@pytest.fixture
async def cold_server() -> AsyncIterator[Server]:
    """A server before any rules exist."""
    async for running in start(Gate(None)):
        yield running


async def test_prefix_matches_come_first_then_substrings(server: Server) -> None:
    status, _, body = await server.get("/api/songs", q="bright")
    assert status == 200
    assert body == {
        "songs": ["Bright Lights", "Brightest Star", "Mr. Brightside"],
        "version": __version__,
        "model_date": MODEL_DATE,
    }


@pytest.mark.parametrize(
    "query",
    ["  BRIGHT ", "bRiGhT", "bright\t"],
)
async def test_query_is_normalised_like_the_recommender(server: Server, query: str) -> None:
    _, _, body = await server.get("/api/songs", q=query)
    assert isinstance(body, dict)
    assert body["songs"] == ["Bright Lights", "Brightest Star", "Mr. Brightside"]


async def test_decomposed_accents_match_composed_names(server: Server) -> None:
    _, _, body = await server.get("/api/songs", q=unicodedata.normalize("NFD", "SEÑ"))
    assert isinstance(body, dict)
    assert body["songs"] == ["Señorita"]


async def test_matches_are_ranked_by_popularity_within_each_group(server: Server) -> None:
    _, _, body = await server.get("/api/songs", q="humble")
    assert isinstance(body, dict)
    assert body["songs"] == ["HUMBLE.", "Humble and Kind"]
    _, _, body = await server.get("/api/songs", q="lights")
    assert isinstance(body, dict)
    assert body["songs"] == ["Lights Up", "Blinding Lights", "Bright Lights"]


async def test_limit_bounds_the_answer(server: Server) -> None:
    _, _, body = await server.get("/api/songs", q="ligh", limit="2")
    assert isinstance(body, dict)
    assert body["songs"] == ["Lights Up", "Blinding Lights"]


async def test_no_query_lists_the_most_popular_songs(server: Server) -> None:
    _, _, body = await server.get("/api/songs")
    assert isinstance(body, dict)
    assert body["songs"] == NAMES[:10]
    _, _, body = await server.get("/api/songs", q="", limit="3")
    assert isinstance(body, dict)
    assert body["songs"] == NAMES[:3]


async def test_unknown_text_matches_nothing(server: Server) -> None:
    status, _, body = await server.get("/api/songs", q="zzz no such song")
    assert status == 200
    assert isinstance(body, dict)
    assert body["songs"] == []


async def test_longest_allowed_query_is_accepted(server: Server) -> None:
    status, _, body = await server.get("/api/songs", q="x" * MAX_QUERY_CHARS)
    assert status == 200
    assert isinstance(body, dict)
    assert body["songs"] == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": str(MAX_SONGS_LIMIT + 1)}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "٥"}, "limit"),
        ({"limit": "1e1"}, "limit"),
        # Past int()'s 4,300-digit limit (a ValueError of its own: once a 500).
        ({"limit": "9" * 4301}, "limit must be from 1 to 50"),
        ({"limit": "1" * 8000}, "limit must be from 1 to 50"),
        ({"q": "x" * (MAX_QUERY_CHARS + 1)}, "q"),
    ],
)
async def test_bad_parameters_are_400_json(
    server: Server, params: dict[str, str], fragment: str
) -> None:
    status, headers, body = await server.get("/api/songs", **params)
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert isinstance(body, dict)
    assert list(body) == ["error"]
    assert fragment in body["error"]


async def test_a_repeated_parameter_is_400_json(server: Server) -> None:
    async with server.session.get(server.url + "/api/songs?q=a&q=b") as response:
        assert response.status == 400
        body = await response.json()
    assert "q is given 2 times" in body["error"]


async def test_before_rules_exist_it_answers_503_at_once(cold_server: Server) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, headers, body = await cold_server.get("/api/songs", q="bright")
    assert loop.time() - started < 1.0
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert isinstance(body, dict)
    assert "no rules loaded" in body["error"]


async def test_answers_follow_a_newly_published_snapshot(cold_server: Server) -> None:
    status, _, _ = await cold_server.get("/api/songs", q="bright")
    assert status == 503
    cold_server.gate.publish(build_snapshot())
    status, _, body = await cold_server.get("/api/songs", q="bright")
    assert status == 200
    assert isinstance(body, dict)
    assert body["songs"][0] == "Bright Lights"


async def test_the_page_and_its_files_are_served(server: Server) -> None:
    async with server.session.get(server.url + "/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        page = await response.text()
    assert 'role="combobox"' in page
    for asset, content_type in (
        ("/static/app.js", "javascript"),
        ("/static/style.css", "text/css"),
    ):
        assert f'"{asset}"' in page
        async with server.session.get(server.url + asset) as response:
            assert response.status == 200
            assert content_type in response.headers["Content-Type"]
            assert len(await response.read()) > 1000


async def test_the_page_loads_nothing_from_elsewhere(server: Server) -> None:
    for path in ("/", "/static/app.js", "/static/style.css"):
        async with server.session.get(server.url + path) as response:
            text = await response.text()
        assert "http://" not in text
        assert "https://" not in text
        assert "//cdn" not in text


async def test_no_directory_listing_or_escape_from_static(server: Server) -> None:
    for path in ("/static/", "/static/../web.py", "/static/%2e%2e/web.py"):
        async with server.session.get(server.url + path) as response:
            assert response.status in (403, 404), path
