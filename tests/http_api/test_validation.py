"""Request validation: every bad body gets a 400 naming the problem; good bodies parse exactly."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from http_api import validation
from http_api.validation import (
    RecommendRequest,
    RequestError,
    decode_content,
    parse_recommend_request,
)
from mining.limits import DEFAULT_LIMIT, MAX_LIMIT, MAX_SONG_NAME_CHARS
from tests.helpers.bombs import gzip_bomb

CAP = 1000


def parse(body: bytes | str, cap: int = CAP) -> RecommendRequest | RequestError:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return parse_recommend_request(raw, cap)


def error(body: bytes | str, cap: int = CAP) -> str:
    result = parse(body, cap)
    assert isinstance(result, RequestError), result
    assert result.status == 400
    return result.message


def test_a_plain_request_gets_the_default_limit() -> None:
    assert parse('{"songs": ["HUMBLE.", "DNA."]}') == RecommendRequest(("HUMBLE.", "DNA."), 10)
    assert DEFAULT_LIMIT == 10


def test_songs_are_deduplicated_keeping_first_occurrence_order() -> None:
    assert parse('{"songs": ["b", "a", "b", "c", "a"], "limit": 3}') == RecommendRequest(
        ("b", "a", "c"), 3
    )


def test_unicode_names_and_escapes_survive() -> None:
    body = json.dumps({"songs": ["Ünïcödé", 'City Of Stars - From "La La Land"', "😀"]})
    assert parse(body) == RecommendRequest(
        ("Ünïcödé", 'City Of Stars - From "La La Land"', "😀"), DEFAULT_LIMIT
    )


def test_unknown_fields_are_ignored_and_null_limit_means_default() -> None:
    assert parse('{"songs": ["x"], "limit": null, "user": 7}') == RecommendRequest(("x",), 10)


@pytest.mark.parametrize("limit", [1, 50, MAX_LIMIT])
def test_limit_in_range_is_kept(limit: int) -> None:
    assert parse(json.dumps({"songs": ["x"], "limit": limit})) == RecommendRequest(("x",), limit)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff\xfe{", "not valid UTF-8"),
        (b'{"songs": ["caf\xe9"]}', "not valid UTF-8"),
        ("", "not valid JSON"),
        ("songs=a&songs=b", "not valid JSON"),
        ('{"songs": ["a"]', "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
        ('{"songs": ["a"], "limit": 1' + "0" * 5000 + "}", "not valid JSON"),
        ('["a", "b"]', "must be a JSON object"),
        ('"a"', "must be a JSON object"),
        ("null", "must be a JSON object"),
        ("{}", '"songs" is missing'),
        ('{"song": ["a"]}', '"songs" is missing'),
        ('{"songs": "a"}', '"songs" must be a list'),
        ('{"songs": {"a": 1}}', '"songs" must be a list'),
        ('{"songs": null}', '"songs" must be a list'),
        ('{"songs": []}', '"songs" is empty'),
        ('{"songs": ["a", 1]}', '"songs"[1] must be a string, not a number'),
        ('{"songs": [null]}', '"songs"[0] must be a string, not null'),
        ('{"songs": [["a"]]}', '"songs"[0] must be a string, not an array'),
        ('{"songs": ["a"], "limit": 0}', '"limit" must be from 1 to 100'),
        ('{"songs": ["a"], "limit": 101}', '"limit" must be from 1 to 100'),
        ('{"songs": ["a"], "limit": -5}', '"limit" must be from 1 to 100'),
        ('{"songs": ["a"], "limit": true}', '"limit" must be an integer'),
        ('{"songs": ["a"], "limit": 5.0}', '"limit" must be an integer'),
        ('{"songs": ["a"], "limit": "5"}', '"limit" must be an integer'),
        ('{"songs": ["a"], "limit": NaN}', '"limit" must be an integer'),
        ('{"songs": ["a"], "limit": 1e400}', '"limit" must be an integer'),
    ],
)
def test_each_bad_body_is_a_400_naming_the_problem(body: bytes | str, expected: str) -> None:
    assert expected in error(body)


def test_too_many_distinct_songs_is_refused_with_the_cap_in_the_message() -> None:
    songs = [f"song {i}" for i in range(CAP + 1)]
    assert f"{CAP + 1} distinct songs; the maximum is {CAP}" in error(json.dumps({"songs": songs}))
    many = [f"song {i}" for i in range(10_000)]
    assert "the maximum is 1000" in error(json.dumps({"songs": many}))


def test_the_cap_counts_distinct_songs_not_list_items() -> None:
    repeated = ["same"] * (CAP * 3) + [f"song {i}" for i in range(CAP - 1)]
    result = parse(json.dumps({"songs": repeated}))
    assert isinstance(result, RecommendRequest)
    assert len(result.songs) == CAP


def test_an_overlong_song_name_is_refused() -> None:
    ok = "x" * MAX_SONG_NAME_CHARS
    assert parse(json.dumps({"songs": [ok]})) == RecommendRequest((ok,), DEFAULT_LIMIT)
    message = error(json.dumps({"songs": ["a", ok + "x"]}))
    assert f'"songs"[1] is {MAX_SONG_NAME_CHARS + 1} characters long' in message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(["songs", "limit", "x"]) | st.text(max_size=5), children)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body_gives_a_request_or_a_400_never_an_exception(body: bytes) -> None:
    result = parse_recommend_request(body, 5)
    if isinstance(result, RequestError):
        assert result.status == 400 and result.message
    else:
        assert 1 <= len(result.songs) <= 5 and 1 <= result.limit <= MAX_LIMIT
        assert all(isinstance(s, str) for s in result.songs)


@given(
    # Lone surrogates cannot be sent as UTF-8; every other code point can.
    st.lists(
        st.text(st.characters(exclude_categories=["Cs"]), max_size=30), min_size=1, max_size=30
    ),
    st.none() | st.integers(1, MAX_LIMIT),
)
def test_every_valid_body_parses_to_its_distinct_songs(songs: list[str], limit: int | None) -> None:
    document: dict[str, object] = {"songs": songs}
    if limit is not None:
        document["limit"] = limit
    result = parse(json.dumps(document, ensure_ascii=False))
    assert result == RecommendRequest(tuple(dict.fromkeys(songs)), limit or DEFAULT_LIMIT)


padding = st.text(" \t\n\r\x0b\x0c\ufeff\u00a0", max_size=3)
requests = st.fixed_dictionaries(
    {"songs": st.lists(st.text(max_size=5), max_size=3)},
    optional={"limit": st.integers() | st.floats() | st.sampled_from([10**20, -(10**30)])},
).map(json.dumps)
texts = st.tuples(
    padding,
    json_values.map(json.dumps)
    | requests
    | st.sampled_from(["NaN", "-Infinity", "1e999", "1" * 30, '"\\ud800"', "[" * 3000]),
    padding,
    st.sampled_from(["", "x", "}", "0", "{}", '"']),
).map("".join) | st.text(max_size=30)


@given(texts.map(lambda text: text.encode("utf-8", "surrogatepass")) | st.binary(max_size=40))
def test_bodies_parse_exactly_as_with_the_stdlib_json_alone(body: bytes) -> None:
    # orjson first, the stdlib when it refuses or reads a float limit: the same request or the
    # same message as the stdlib alone, on values, padding, trailing data, truncation, a BOM,
    # NaN, huge numbers, lone surrogates, bytes that are not UTF-8 and deep nesting.
    for cut in range(0, min(len(body), 40) + 1, 7):
        candidate = body[: len(body) - cut]
        got = parse_recommend_request(candidate, CAP)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(validation, "_decode", validation._decode_with_stdlib)
            assert got == validation.parse_checked(candidate, CAP)


usual_requests = st.fixed_dictionaries(
    {
        "songs": st.lists(
            st.text(max_size=3)
            | st.sampled_from(["a" * MAX_SONG_NAME_CHARS, "b" * (MAX_SONG_NAME_CHARS + 1)])
            | json_values,
            max_size=8,
        )
        | json_values
    },
    optional={
        "limit": st.integers(-2, MAX_LIMIT + 2) | st.sampled_from([True, False, 1.0, None, "5"]),
        "x": json_values,
    },
)


@given(usual_requests, st.integers(1, 6))
def test_the_one_pass_reading_gives_what_the_checks_give(document: object, cap: int) -> None:
    # Near the usual request: lists of names or other values, names at and past the length
    # limit, limits in and out of range or of another type, repeated names around the cap.
    body = json.dumps(document).encode()
    assert parse_recommend_request(body, cap) == validation.parse_checked(body, cap)


def test_a_control_character_is_named_without_a_doubled_word() -> None:
    message = error('{"songs": ["a\x01b"]}')
    assert message == "body is not valid JSON: Invalid control character at line 1 column 14"


LIMIT = 1 << 20


def test_inflating_stops_at_the_limit_instead_of_running_through_the_bomb() -> None:
    bomb = gzip_bomb(200)
    started = time.process_time()
    refused = decode_content(bomb, "gzip", LIMIT)
    bounded = time.process_time() - started
    started = time.process_time()
    assert len(zlib.decompress(bomb, zlib.MAX_WBITS | 16)) == 200 << 20
    whole = time.process_time() - started
    assert refused == RequestError(413, f"request body is larger than {LIMIT} bytes")
    # Side by side: stopping at 1 MiB costs a small fraction of inflating all 200 MiB.
    assert bounded < whole / 20, (bounded, whole)


@pytest.mark.parametrize("size", [LIMIT - 1, LIMIT])
def test_a_body_inflating_to_the_limit_is_kept_whole(size: int) -> None:
    body = b"x" * size
    assert decode_content(gzip.compress(body), "gzip", LIMIT) == body
    assert decode_content(gzip.compress(body + b"x"), "gzip", size) == RequestError(
        413, f"request body is larger than {size} bytes"
    )


@pytest.mark.parametrize(
    ("header", "status", "message"),
    [
        ("br", 415, "Content-Encoding 'br' is not supported; send gzip, deflate, identity"),
        ("zstd", 415, "Content-Encoding 'zstd' is not supported"),
        ("foo", 415, "Content-Encoding 'foo' is not supported"),
        ("\x1b[31m" + "z" * 200, 415, "Content-Encoding '\\x1b[31mzzz"),
        ("gzip, deflate", 415, "a body may be compressed once only"),
    ],
)
def test_a_coding_the_server_cannot_decode_is_named_in_a_415(
    header: str, status: int, message: str
) -> None:
    refused = decode_content(b"{}", header, LIMIT)
    assert isinstance(refused, RequestError)
    assert refused.status == status
    assert refused.message.startswith(message)
    assert len(refused.message) < 150


@pytest.mark.parametrize("header", ["identity", "", " , identity", "Identity"])
def test_identity_is_the_body_as_sent(header: str) -> None:
    assert decode_content(b"{}", header, LIMIT) == b"{}"
