"""The job's settings: defaults that work offline, and one clear error per bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from mining.errors import SettingsError
from mining.rulesfile import MiningParameters
from mining.settings import SAMPLE_DATASET, Settings


def test_defaults_mine_the_bundled_sample_with_the_documented_parameters() -> None:
    settings = Settings.from_env({})
    assert settings.dataset_url == str(SAMPLE_DATASET)
    assert SAMPLE_DATASET.is_file()
    assert settings.data_dir == Path("ml-data")
    assert settings.parameters == MiningParameters(0.025, 0.7, 8)
    assert (settings.engine, settings.log_level) == ("mlxtend", "INFO")
    assert settings.normalised_url == SAMPLE_DATASET.resolve().as_uri()


def test_every_variable_is_read_and_blank_means_default() -> None:
    settings = Settings.from_env(
        {
            "DATASET_URL": "https://example.org/playlists.csv.gz",
            "DATA_DIR": "/tmp/rules here",
            "MIN_SUPPORT": "0.05",
            "MIN_CONFIDENCE": "1",
            "MAX_LEN": "3",
            "MINING_ENGINE": " PyFim ",
            "LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings(
        dataset_url="https://example.org/playlists.csv.gz",
        data_dir=Path("/tmp/rules here"),
        min_support=0.05,
        min_confidence=1.0,
        max_len=3,
        engine="pyfim",
        log_level="DEBUG",
    )
    assert Settings.from_env({"MIN_SUPPORT": " ", "MAX_LEN": "", "DATA_DIR": ""}) == Settings()


def test_a_plain_path_is_normalised_to_a_file_url(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATASET_URL": str(tmp_path / "my playlists.csv")})
    assert settings.normalised_url == (tmp_path / "my playlists.csv").as_uri()
    assert " " not in settings.normalised_url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MIN_SUPPORT", "abc"),
        ("MIN_SUPPORT", "0"),
        ("MIN_SUPPORT", "-0.1"),
        ("MIN_SUPPORT", "1.5"),
        ("MIN_SUPPORT", "nan"),
        ("MIN_SUPPORT", "2.5%"),
        ("MIN_CONFIDENCE", "1.01"),
        ("MIN_CONFIDENCE", "-1"),
        ("MIN_CONFIDENCE", "inf"),
        ("MAX_LEN", "1"),
        ("MAX_LEN", "2.5"),
        ("MAX_LEN", "eight"),
        ("MINING_ENGINE", "spark"),
        ("LOG_LEVEL", "loud"),
        ("DATASET_URL", "ftp://example.org/playlists.csv"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}=")
    assert "\n" not in message


def test_zero_confidence_is_allowed_and_means_every_rule() -> None:
    assert Settings.from_env({"MIN_CONFIDENCE": "0"}).min_confidence == 0.0


def test_the_input_limits_take_sizes_with_units_and_default_to_512_mib() -> None:
    defaults = Settings.from_env({})
    assert defaults.max_download_bytes == defaults.max_input_bytes == 512 * 1024**2
    assert defaults.allow_empty_rules is False
    settings = Settings.from_env(
        {"MAX_DOWNLOAD_SIZE": "1.5GB", "MAX_INPUT_SIZE": " 64 MiB ", "ALLOW_EMPTY_RULES": "yes"}
    )
    assert settings.max_download_bytes == 1_500_000_000
    assert settings.max_input_bytes == 64 * 1024**2
    assert settings.allow_empty_rules is True
    assert Settings.from_env({"MAX_INPUT_SIZE": "1048576"}).max_input_bytes == 1024**2


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_DOWNLOAD_SIZE", "lots", "is not a size such as 512MiB"),
        ("MAX_DOWNLOAD_SIZE", "-1GiB", "is not a size"),
        ("MAX_INPUT_SIZE", "0", "must be at least 1 byte"),
        ("MAX_INPUT_SIZE", "2 parsecs", "is not a size"),
        ("ALLOW_EMPTY_RULES", "maybe", "must be 1 or 0"),
    ],
)
def test_a_bad_limit_or_flag_names_its_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}=") as raised:
        Settings.from_env({name: value})
    assert message in str(raised.value)
