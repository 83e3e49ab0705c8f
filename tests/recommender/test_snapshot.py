"""The answer body a snapshot writes: the contract's JSON, byte for byte as json.dumps writes it."""

from __future__ import annotations

import json

import pytest

from mining.limits import MAX_LIMIT
from mining.version import __version__
from recommender.engine import RANKINGS
from tests.helpers.rules import small_ruleset, snapshot_of


@pytest.mark.parametrize("ranking", RANKINGS)
@pytest.mark.parametrize(
    ("songs", "limit"),
    [
        (["Hey Jude"], 2),
        (["Hey Jude", "Let It Be"], 5),
        (["Nope", "Hey Jude", "Nope", 'Also "unknown" \u2028'], 3),
        (["Imagine"], MAX_LIMIT),
    ],
)
def test_the_body_is_the_explained_answer_as_json(
    songs: list[str], limit: int, ranking: str
) -> None:
    snapshot = snapshot_of(small_ruleset())
    body = snapshot.answer_json(songs, limit, ranking)
    answer = snapshot.recommender.explain(songs, limit, ranking=ranking)
    expected = {
        "songs": answer.songs,
        "version": __version__,
        "model_date": snapshot.model_date,
        "from_rules": answer.from_rules,
        "unknown": answer.unknown,
    }
    assert json.loads(body) == expected
    assert body == json.dumps(expected).encode()
