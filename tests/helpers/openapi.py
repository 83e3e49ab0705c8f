"""Every response the HTTP tests get, held to the OpenAPI document (``http_api/openapi.json``).

:class:`ResponseChecker` looks a response up in the document (its path template, its method,
its status) and validates its required headers, its media type and, for JSON, its body against
the schema (JSON Schema 2020-12, OpenAPI 3.1's dialect). The document's own conventions
(``info.description``) are checked too: HEAD is answered like GET, a method a path does not
list gets ``MethodNotAllowed`` with the path's methods in ``Allow``, a path it does not list
gets ``NotFound``.

:func:`checked_app` is ``init_app`` with :data:`CHECKER` watching every response the app sends
(aiohttp's ``on_response_prepare``), whichever test or thread drives it; the root
``tests/conftest.py`` fails any test during which a response did not match.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import Any

import jsonschema
from aiohttp import web
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from actors.gate import RulesGate
from http_api.app import init_app
from http_api.openapi import OPENAPI_PATH
from http_api.settings import Settings

BASE_URI = "urn:playlist-recommender:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Statuses whose answer has no body, whatever the document says of the operation's content.
NO_BODY = frozenset({204, 304})


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


class ResponseChecker:
    """Validates responses against one OpenAPI 3.1 document; keeps what it saw and found."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._registry: Registry[Any] = Registry().with_resource(
            BASE_URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self._templates = [
            (
                re.compile(
                    "^" + re.sub(r"\\\{([^/]+?)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"
                ),
                path,
            )
            for path in document["paths"]
        ]
        self._lock = threading.Lock()
        # (method, path template or None, status) of every response checked.
        self.seen: set[tuple[str, str | None, int]] = set()
        self.problems: list[str] = []

    # -- lookups ----------------------------------------------------------------------------

    def template_of(self, path: str) -> str | None:
        """The document's path template matching a request path (its path parameters valid
        for their schemas, e.g. one of the files listed), or None."""
        for pattern, template in self._templates:
            match = pattern.match(path)
            if match and all(
                jsonschema.Draft202012Validator(self._path_parameter(template, name)).is_valid(
                    value
                )
                for name, value in match.groupdict().items()
            ):
                return str(template)
        return None

    def _path_parameter(self, template: str, name: str) -> dict[str, Any]:
        for method in METHODS:
            for parameter in self.document["paths"][template].get(method, {}).get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == name:
                    schema: dict[str, Any] = parameter["schema"]
                    return schema
        raise KeyError(f"{template} does not describe its path parameter {name}")

    def documented_methods(self, template: str) -> list[str]:
        """The methods a path answers, upper case, HEAD included wherever GET is."""
        item = self.document["paths"][template]
        methods = {method.upper() for method in METHODS if method in item}
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)

    def follow(self, pointer: str) -> tuple[str, dict[str, Any]]:
        """The object at a JSON pointer into the document, following ``$ref`` (to a shared
        response, a header...) until a real one: its own pointer, and it."""
        while True:
            node: Any = self.document
            for part in pointer.removeprefix("/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            if "$ref" not in node:
                return pointer, node
            pointer = node["$ref"].removeprefix("#")

    def expected_response(
        self, method: str, path: str, status: int
    ) -> tuple[str | None, str, dict[str, Any] | None]:
        """(template, JSON pointer of the response object, the response object, or None when
        the document does not allow ``status`` here)."""
        template = self.template_of(path)
        if template is None:
            pointer, response = self.follow("/components/responses/NotFound")
            return None, pointer, response if status == 404 else None
        operation_method = "get" if method == "HEAD" else method.lower()
        item = self.document["paths"][template]
        if operation_method not in item:
            pointer, response = self.follow("/components/responses/MethodNotAllowed")
            return template, pointer, response if status == 405 else None
        if str(status) not in item[operation_method]["responses"]:
            return template, "", None
        pointer, response = self.follow(
            "/" + _pointer("paths", template, operation_method, "responses", str(status))
        )
        return template, pointer, response

    # -- checks -----------------------------------------------------------------------------

    def check(
        self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes | None
    ) -> list[str]:
        """Every way the response differs from the document (empty: it matches). ``body`` None:
        not known (a file being streamed); it is then not checked."""
        where = f"{method} {path} -> {status}"
        template, pointer, response = self.expected_response(method, path, status)
        with self._lock:
            self.seen.add((method, template, status))
        if response is None:
            return [f"{where}: status {status} is not documented for this operation"]
        problems = []
        lowered = {name.lower(): value for name, value in headers.items()}
        for name in response.get("headers", {}):
            header_pointer, header = self.follow(f"{pointer}/headers/{_pointer(name)}")
            value = lowered.get(name.lower())
            if value is None:
                if header.get("required"):
                    problems.append(f"{where}: required header {name} is missing")
                continue
            schema = {"$ref": f"{BASE_URI}#{header_pointer}/schema"}
            problems += self._schema_problems(f"{where}: header {name}", schema, value)
        if pointer.endswith("MethodNotAllowed") and template is not None:
            allowed = ", ".join(self.documented_methods(template))
            if lowered.get("allow") != allowed:
                problems.append(f"{where}: Allow is {lowered.get('allow')!r}, not {allowed!r}")
        content = response.get("content")
        if content is None or status in NO_BODY:
            return problems
        media_type = lowered.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in content:
            listed = list(content)
            return [*problems, f"{where}: Content-Type {media_type!r} is not one of {listed}"]
        if media_type == "application/json" and body is not None and method != "HEAD":
            try:
                document = json.loads(body)
            except ValueError as exc:
                return [*problems, f"{where}: the body is not JSON ({exc}): {body[:200]!r}"]
            schema = {"$ref": f"{BASE_URI}#{pointer}/content/{_pointer(media_type)}/schema"}
            problems += self._schema_problems(f"{where}: body", schema, document)
        return problems

    def _schema_problems(self, where: str, schema: dict[str, Any], instance: object) -> list[str]:
        # A schema inside the document is named by its URI, so its own $refs resolve there.
        validator = jsonschema.Draft202012Validator(schema, registry=self._registry)
        return [
            f"{where}: {error.message} at {'/'.join(map(str, error.absolute_path)) or 'top'}"
            for error in validator.iter_errors(instance)
        ]

    def record(
        self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes | None
    ) -> None:
        """Check a response and keep its problems for :meth:`take_problems`."""
        try:
            found = self.check(method, path, status, headers, body)
        except Exception as exc:  # a checker bug must fail the test, not the server
            found = [f"{method} {path} -> {status}: the check itself failed: {exc!r}"]
        if found:
            with self._lock:
                self.problems += found

    def take_problems(self) -> list[str]:
        """The problems found since the last call."""
        with self._lock:
            problems, self.problems = self.problems, []
        return problems

    def watch(self, app: web.Application) -> web.Application:
        """Check every response ``app`` sends, as it is sent."""

        async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
            body = response.body if isinstance(response, web.Response) else None
            self.record(
                request.method,
                request.path,
                response.status,
                response.headers,
                body if isinstance(body, bytes) else None,
            )

        app.on_response_prepare.append(on_prepare)
        return app


CHECKER = ResponseChecker(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")))


def checked_app(gate: RulesGate, settings: Settings) -> web.Application:
    """``init_app(gate, settings)`` with every response it sends checked by :data:`CHECKER`."""
    return CHECKER.watch(init_app(gate, settings))
