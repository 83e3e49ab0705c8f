"""The OpenAPI document (http_api/openapi.json): valid OpenAPI 3.1, served at /api/openapi.json,
naming exactly the routes the app has, and matched by every response the app gives, each
documented status of each operation produced here by a real request.

Every other HTTP test checks its responses against the same document (tests/helpers/openapi.py
and tests/conftest.py); this module makes sure the document can fail them, and that nothing it
lists goes untried.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openapi_spec_validator
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from http_api.app import init_app
from http_api.openapi import OPENAPI_PATH
from http_api.settings import Settings
from http_api.web import STATIC_DIR
from mining.version import __version__
from recommender.snapshot import Snapshot
from tests.helpers.gate import Gate
from tests.helpers.openapi import BASE_URI, CHECKER, ResponseChecker
from tests.helpers.processes import REPO
from tests.helpers.rules import read_model, small_ruleset, write_model

DOCUMENT: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
SETTINGS = Settings(rules_wait_seconds=0, max_body_bytes=4096)
# A 500 is the route wrapper's answer to a bug, documented on every operation; a broken snapshot
# provokes it where a handler uses the rules, and nothing short of breaking the code elsewhere.
PROVOKED_500 = {("POST", "/api/recommend"), ("GET", "/api/songs")}


def test_the_document_is_valid_openapi_3_1() -> None:
    openapi_spec_validator.validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1.")


def test_info_version_follows_the_package_version() -> None:
    assert DOCUMENT["info"]["version"] == __version__, (
        "bump info.version in http_api/openapi.json along with mining/version.py"
    )


def test_the_docs_copy_is_the_packaged_file() -> None:
    assert (REPO / "docs" / "openapi.json").read_bytes() == OPENAPI_PATH.read_bytes()
    # Declared as package data, so that pip install (and the API image) ships it.
    with (REPO / "pyproject.toml").open("rb") as file:
        packaged = tomllib.load(file)["tool"]["setuptools"]["package-data"]["http_api"]
    assert OPENAPI_PATH.relative_to(OPENAPI_PATH.parent).as_posix() in packaged


def _examples(node: object, pointer: str = "") -> Iterator[tuple[str, object, str]]:
    """(pointer of the schema, example, where) for every example next to a schema."""
    if isinstance(node, dict):
        if "schema" in node and "example" in node:
            yield f"{pointer}/schema", node["example"], pointer
        if "type" in node or "properties" in node:
            for i, example in enumerate(node.get("examples", [])):
                yield pointer, example, f"{pointer}/examples/{i}"
            if "example" in node and "schema" not in node:
                yield pointer, node["example"], f"{pointer}/example"
        for key, value in node.items():
            yield from _examples(value, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _examples(value, f"{pointer}/{i}")


def test_every_example_matches_its_schema() -> None:
    registry = CHECKER._registry
    found = list(_examples(DOCUMENT))
    assert len(found) >= 10
    for schema_pointer, example, where in found:
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"{BASE_URI}#{schema_pointer}"}, registry=registry
        )
        assert [e.message for e in validator.iter_errors(example)] == [], where


def test_every_route_is_documented_and_every_operation_is_served() -> None:
    app = init_app(Gate(), SETTINGS)
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        template = CHECKER.template_of(path)
        if route.method == "*":
            continue  # the 405 and 404 answers, checked by the walk below
        assert template is not None, f"{route.method} {path} is not in the document"
        served.add((route.method, template))
    documented = {
        (method, template)
        for template in DOCUMENT["paths"]
        for method in CHECKER.documented_methods(template)
    }
    assert served == documented
    (file_parameter,) = DOCUMENT["paths"]["/static/{file}"]["get"]["parameters"]
    assert file_parameter["schema"]["enum"] == sorted(p.name for p in STATIC_DIR.iterdir())


@pytest.fixture
async def walk(tmp_path: Path) -> AsyncIterator[tuple[ResponseChecker, dict[str, str]]]:
    """A checker of its own watching three real servers: with rules, without, and broken."""
    checker = ResponseChecker(DOCUMENT)
    write_model(tmp_path, small_ruleset())
    snapshot = read_model(tmp_path)
    # A snapshot without a recommender makes the handlers raise, as a genuine bug would.
    broken = Snapshot(checkpoint=snapshot.checkpoint, header=snapshot.header, recommender=None)  # type: ignore[arg-type]
    servers = {
        name: TestServer(checker.watch(init_app(gate, SETTINGS)), host="127.0.0.1")
        for name, gate in (("ready", Gate(snapshot)), ("empty", Gate()), ("broken", Gate(broken)))
    }
    for server in servers.values():
        await server.start_server()
    yield checker, {name: str(s.make_url("")).rstrip("/") for name, s in servers.items()}
    for server in servers.values():
        await server.close()


# (server, method, path, request headers, body, expected status): every documented answer.
WALK: list[tuple[str, str, str, dict[str, str], bytes | None, int]] = [
    ("ready", "POST", "/api/recommend", {}, b'{"songs": ["Hey Jude"], "limit": 3}', 200),
    ("ready", "POST", "/api/recommend", {}, b'{"songs": []}', 400),
    ("ready", "POST", "/api/recommend", {}, b"x" * 5000, 413),
    ("empty", "POST", "/api/recommend", {}, b'{"songs": ["Hey Jude"]}', 503),
    ("broken", "POST", "/api/recommend", {}, b'{"songs": ["Hey Jude"]}', 500),
    ("ready", "GET", "/api/songs?q=he&limit=2", {}, None, 200),
    ("ready", "GET", "/api/songs?limit=0", {}, None, 400),
    ("empty", "GET", "/api/songs?q=he", {}, None, 503),
    ("broken", "GET", "/api/songs?q=he", {}, None, 500),
    ("empty", "GET", "/api/openapi.json", {}, None, 200),
    ("empty", "GET", "/healthz", {}, None, 200),
    ("ready", "GET", "/readyz", {}, None, 200),
    ("empty", "GET", "/readyz", {}, None, 503),
    ("ready", "GET", "/metrics", {}, None, 200),
    *(
        ("empty", "GET", path, headers, None, status)
        for path in ("/", *(f"/static/{p.name}" for p in sorted(STATIC_DIR.iterdir())))
        for headers, status in (
            ({}, 200),
            # Range is ignored: the files are small and served whole.
            ({"Range": "bytes=99999999-"}, 200),
            ({"If-None-Match": "*"}, 304),
        )
    ),
    ("ready", "POST", "/api/recommend", {"Content-Encoding": "foo"}, b"{}", 415),
    ("ready", "POST", "/api/recommend", {"Expect": "foo"}, b'{"songs": ["a"]}', 417),
    ("empty", "GET", "/nowhere", {}, None, 404),
    ("empty", "POST", "/api/recommend/more", {}, b"{}", 404),
]


async def test_every_documented_answer_is_given_and_matches_the_document(
    walk: tuple[ResponseChecker, dict[str, str]],
) -> None:
    checker, urls = walk
    requests = list(WALK)
    for template, item in DOCUMENT["paths"].items():
        path = template.replace("{file}", "app.js")
        requests.append(("empty", "PUT", path, {}, b"", 405))
        if "get" in item:
            requests.append(("ready", "HEAD", path, {}, None, 200))
    async with ClientSession(auto_decompress=False) as http:
        for server, method, path, headers, body, status in requests:
            async with http.request(
                method, urls[server] + path, headers=headers, data=body
            ) as response:
                payload = await response.read()
                assert response.status == status, (server, method, path, payload[:200])
                if (method, path) == ("GET", "/api/openapi.json"):
                    assert payload == OPENAPI_PATH.read_bytes()
    assert checker.take_problems() == []

    expected = {
        (method.upper(), template, int(status))
        for template, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
        if (status != "500" or (method.upper(), template) in PROVOKED_500)
        # A body that stops arriving: test_connections.py waits out its timeout for it.
        and (method.upper(), template, status) != ("POST", "/api/recommend", "408")
    }
    seen = {(method, template, status) for method, template, status in checker.seen}
    assert expected - seen == set()
    assert {("PUT", template, 405) for template in DOCUMENT["paths"]} <= seen
    assert {("GET", None, 404), ("POST", None, 404)} <= seen


def _problems(method: str, path: str, status: int, headers: dict[str, str], body: object) -> str:
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return "\n".join(ResponseChecker(DOCUMENT).check(method, path, status, headers, raw))


JSON = {"Content-Type": "application/json; charset=utf-8"}
ANSWER = {
    "songs": ["a"],
    "version": "1.0.0",
    "model_date": "2026-11-28 19:54:49.072040",
    "from_rules": 1,
    "unknown": [],
}


@pytest.mark.parametrize(
    ("method", "path", "status", "headers", "body", "complaint"),
    [
        ("POST", "/api/recommend", 200, JSON, ANSWER, ""),
        ("POST", "/api/recommend", 200, JSON, {**ANSWER, "extra": 1}, "'extra' was unexpected"),
        ("POST", "/api/recommend", 200, JSON, {"songs": ["a"]}, "'version' is a required"),
        ("POST", "/api/recommend", 200, JSON, {**ANSWER, "model_date": "today"}, "does not match"),
        ("POST", "/api/recommend", 200, {"Content-Type": "text/html"}, b"<p>", "Content-Type"),
        ("POST", "/api/recommend", 200, JSON, b"{not json", "the body is not JSON"),
        ("POST", "/api/recommend", 418, JSON, {"error": "teapot"}, "status 418 is not documented"),
        ("POST", "/api/recommend", 503, JSON, {"error": "later"}, "Retry-After is missing"),
        ("POST", "/api/recommend", 503, {**JSON, "Retry-After": "soon"}, {"error": "x"}, "match"),
        ("POST", "/api/recommend", 400, JSON, {"message": "bad"}, "'error' is a required"),
        ("PUT", "/healthz", 405, {**JSON, "Allow": "GET"}, {"error": "no"}, "not 'GET, HEAD'"),
        ("DELETE", "/healthz", 405, {**JSON, "Allow": "GET, HEAD"}, {"error": "no"}, ""),
        ("GET", "/nowhere", 200, JSON, {"error": "x"}, "status 200 is not documented"),
        ("GET", "/readyz", 503, JSON, {"ready": False, "reason": "bored"}, "is not one of"),
        ("HEAD", "/readyz", 200, JSON, b"", ""),
        ("GET", "/static/other.js", 200, {"Content-Type": "text/javascript"}, b"", "status 200"),
    ],
)
def test_the_checker_refuses_what_the_document_does_not_say(
    method: str, path: str, status: int, headers: dict[str, str], *, body: object, complaint: str
) -> None:
    problems = _problems(method, path, status, headers, body)
    if complaint:
        assert complaint in problems
    else:
        assert problems == ""
