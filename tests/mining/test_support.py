"""MIN_SUPPORT as users write it (a fraction, ``N playlists``, ``auto``) and the count it means."""

from __future__ import annotations

import pytest

from mining.support import (
    AUTO,
    SupportSpecError,
    count_for_fraction,
    fixed_count,
    parse_support,
    spec_text,
)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("auto", AUTO),
        (" AUTO ", AUTO),
        ("0.025", 0.025),
        ("1", 1.0),
        ("1e-9", 1e-9),
        ("2 playlists", "2 playlists"),
        ("1 playlist", "1 playlist"),
        ("1 playlists", "1 playlist"),
        ("12Playlists", "12 playlists"),
        ("007 playlists", "7 playlists"),
    ],
)
def test_accepted_forms_and_their_canonical_text(text: str, spec: float | str) -> None:
    parsed = parse_support(text)
    assert parsed == spec
    # The canonical text parses back to the same spec: the rules header stores it.
    assert parse_support(spec_text(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("0", "greater than 0"),
        ("-0.1", "greater than 0"),
        ("1.5", "'N playlists'"),
        ("2", "'N playlists'"),
        ("nan", "greater than 0"),
        ("inf", "greater than 0"),
        ("0 playlists", "at least 1"),
        ("1.5 playlists", "'N playlists'"),
        ("two playlists", "'N playlists'"),
        ("2.5%", "'N playlists'"),
        ("", "'N playlists'"),
    ],
)
def test_anything_else_is_refused_saying_what_is_accepted(text: str, hint: str) -> None:
    with pytest.raises(SupportSpecError, match=hint):
        parse_support(text)


def test_a_spec_resolves_to_the_exact_playlist_count() -> None:
    assert count_for_fraction(0.025, 2300) == 58
    assert fixed_count(0.025, 2300) == 58
    assert fixed_count(0.004, 500) == 2
    assert fixed_count("5 playlists", 500) == 5
    # More playlists than there are: nothing can be frequent, which is a valid answer.
    assert fixed_count("900 playlists", 500) == 900
    assert fixed_count(AUTO, 500) is None


def test_a_fraction_below_one_playlist_means_one_playlist() -> None:
    assert count_for_fraction(1e-9, 500) == 1
    assert fixed_count(1e-9, 500) == 1
    assert fixed_count(5e-324, 10**6) == 1
