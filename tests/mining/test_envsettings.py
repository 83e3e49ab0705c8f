"""The one settings helper: typed values, defaults for unset or blank, one message style."""

from __future__ import annotations

import math

import pytest

from mining.envsettings import EnvReader, SettingsError, choose, parse_size, shown


def refused(env: dict[str, str], read: str, *args: object, **options: object) -> str:
    """The message of the SettingsError that ``EnvReader(env).<read>(*args)`` raises."""
    with pytest.raises(SettingsError) as caught:
        getattr(EnvReader(env), read)(*args, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unset_or_blank_takes_the_default_and_values_are_stripped() -> None:
    read = EnvReader({"BLANK": "  ", "PORT": " 8080 ", "NAME": " x "})
    assert read.integer("UNSET", 7, 0, 10) == 7
    assert read.integer("BLANK", 7, 0, 10) == 7
    assert read.integer("PORT", 1, 0, 65535) == 8080
    assert read.text("NAME", "default") == "x"
    assert read.text("BLANK", "default") == "default"
    assert read.optional_size("UNSET") is None


def test_every_refusal_names_the_variable_the_value_and_what_is_accepted() -> None:
    assert refused({"PORT": "http"}, "integer", "PORT", 1, 0, 65535) == (
        "PORT='http' must be a whole number from 0 to 65535"
    )
    assert refused({"PORT": "70000"}, "integer", "PORT", 1, 0, 65535) == (
        "PORT='70000' must be a whole number from 0 to 65535"
    )
    assert refused({"WAIT": "-1"}, "number", "WAIT", 1.0, 0, 600) == (
        "WAIT='-1' must be a number from 0 to 600"
    )
    assert refused({"BEAT": "0"}, "number", "BEAT", 1.0, 0, math.inf, low_open=True) == (
        "BEAT='0' must be a number greater than 0"
    )
    assert refused({"FLAG": "maybe"}, "flag", "FLAG", False) == (
        "FLAG='maybe' must be 1 or 0 (or true/false, yes/no, on/off)"
    )
    assert refused({"MODE": "Fast"}, "choice", "MODE", ("auto", "slow"), "auto") == (
        "MODE='Fast' must be one of auto, slow"
    )
    assert refused({"LOG_LEVEL": "loud"}, "log_level") == (
        "LOG_LEVEL='loud' must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )
    assert refused({"SIZE": "2 parsecs"}, "size", "SIZE", 1) == (
        "SIZE='2 parsecs' must be a size such as 512MiB, 2GB or 1048576 (bytes)"
    )
    assert refused({"SIZE": "10MiB"}, "size", "SIZE", 1, 2**30, "1 GiB") == (
        "SIZE='10MiB' must be a size of at least 1 GiB"
    )
    assert refused({"CAP": "lots"}, "auto_or_integer", "CAP", 1, 10) == (
        "CAP='lots' must be auto or a whole number from 1 to 10"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_numbers_must_be_finite(value: str) -> None:
    assert refused({"N": value}, "number", "N", 1.0, 0).startswith(f"N='{value}' must be")


def test_a_shown_value_is_short_and_escaped() -> None:
    assert shown("a\x1b[31mred") == "'a\\x1b[31mred'"
    long = "x" * 1000
    assert refused({"PORT": long}, "integer", "PORT", 1, 0, 9).startswith(f"PORT='{'x' * 40}…'")


def test_flags_choices_and_levels_take_any_case() -> None:
    read = EnvReader({"A": "Yes", "B": "OFF", "MODE": "SLOW", "LOG_LEVEL": "debug"})
    assert read.flag("A", False) is True
    assert read.flag("B", True) is False
    assert read.choice("MODE", ("auto", "slow"), "auto") == "slow"
    assert read.log_level() == "DEBUG"
    assert choose("LOG_FORMAT", None, ("text", "json"), "text") == "text"
    assert read.auto_or_integer("UNSET", 1, 10) is None
    assert EnvReader({"CAP": "AUTO"}).auto_or_integer("CAP", 1, 10) is None
    assert EnvReader({"CAP": "5"}).auto_or_integer("CAP", 1, 10) == 5


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1024**2), ("512MiB", 512 * 1024**2), ("1.5GB", 1_500_000_000), (".5 kB", 500)],
)
def test_sizes_in_the_usual_units(text: str, size: int) -> None:
    assert parse_size(text) == size
    assert EnvReader({"S": text}).size("S", 1) == size


def test_a_settings_error_is_a_value_error_with_exit_code_2() -> None:
    assert issubclass(SettingsError, ValueError)
    assert SettingsError.exit_code == 2
