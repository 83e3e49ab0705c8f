"""The job's settings: defaults that work offline, and one clear error per bad variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mining.engines import default_engine
from mining.errors import SettingsError
from mining.memory import GIB, MIB
from mining.rulesfile import MiningParameters
from mining.settings import (
    DEFAULT_AUTO_FLOOR,
    DEFAULT_AUTO_MAX_RULES,
    DEFAULT_MAX_LEN,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_SUPPORT,
    SAMPLE_DATASET,
    Settings,
)
from tests.helpers.processes import REPO


def test_defaults_mine_the_bundled_sample_with_the_documented_parameters() -> None:
    settings = Settings.from_env({})
    assert settings.dataset_url == str(SAMPLE_DATASET)
    assert SAMPLE_DATASET.is_file()
    assert settings.data_dir == Path("ml-data")
    assert settings.parameters == MiningParameters(
        "auto", 0.05, 2, auto_floor=1, auto_max_rules=1_000_000
    )
    assert (DEFAULT_MIN_SUPPORT, DEFAULT_MIN_CONFIDENCE, DEFAULT_MAX_LEN) == ("auto", 0.05, 2)
    assert (DEFAULT_AUTO_FLOOR, DEFAULT_AUTO_MAX_RULES) == (1, 1_000_000)
    # pyfim where it is installed (it is, with the dev extra), mlxtend otherwise.
    assert (settings.engine, settings.log_level) == ("pyfim", "INFO")
    assert settings.engine == default_engine()
    assert settings.memory_limit is None
    assert (settings.auto_floor, settings.auto_max_rules) == (
        DEFAULT_AUTO_FLOOR,
        DEFAULT_AUTO_MAX_RULES,
    )
    assert settings.normalised_url == SAMPLE_DATASET.resolve().as_uri()


def test_without_pyfim_the_default_engine_is_mlxtend() -> None:
    code = (
        "import sys; sys.modules['fim'] = None; from mining.settings import Settings; "
        "print(Settings.from_env({}).engine, Settings().engine)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["mlxtend", "mlxtend"]


def test_every_variable_is_read_and_blank_means_default() -> None:
    settings = Settings.from_env(
        {
            "DATASET_URL": "https://example.org/playlists.csv.gz",
            "DATA_DIR": "/tmp/rules here",
            "MIN_SUPPORT": "0.05",
            "MIN_CONFIDENCE": "1",
            "MAX_LEN": "3",
            "MINING_ENGINE": " MLxtend ",
            "LOG_LEVEL": "debug",
            "MINING_MEMORY_LIMIT": "1.5GiB",
            "AUTO_SUPPORT_FLOOR": "3",
            "AUTO_MAX_RULES": "2000",
            "MINING_HEARTBEAT_SECONDS": "2.5",
        }
    )
    assert settings == Settings(
        dataset_url="https://example.org/playlists.csv.gz",
        data_dir=Path("/tmp/rules here"),
        min_support=0.05,
        min_confidence=1.0,
        max_len=3,
        engine="mlxtend",
        log_level="DEBUG",
        memory_limit=3 * GIB // 2,
        auto_floor=3,
        auto_max_rules=2000,
        heartbeat_seconds=2.5,
    )
    # The auto bounds are part of the parameters only for auto, the one spec they change.
    assert settings.parameters == MiningParameters(0.05, 1.0, 3)
    assert Settings.from_env({"MIN_SUPPORT": " ", "MAX_LEN": "", "DATA_DIR": ""}) == Settings()


@pytest.mark.parametrize(
    ("raw", "spec", "floor"),
    [
        ("auto", "auto", "2"),
        ("3 playlists", "3 playlists", "2"),
        ("1 playlist", "1 playlist", "2"),
        ("0.004", 0.004, "2"),
        ("auto", "auto", "1 playlist"),
    ],
)
def test_support_forms_and_the_auto_bounds_in_the_parameters(
    raw: str, spec: float | str, floor: str
) -> None:
    settings = Settings.from_env({"MIN_SUPPORT": raw, "AUTO_SUPPORT_FLOOR": floor})
    assert settings.min_support == spec
    auto = spec == "auto"
    expected_floor = int(floor.split(maxsplit=1)[0])
    assert settings.parameters == MiningParameters(
        spec,
        DEFAULT_MIN_CONFIDENCE,
        DEFAULT_MAX_LEN,
        auto_floor=expected_floor if auto else None,
        auto_max_rules=DEFAULT_AUTO_MAX_RULES if auto else None,
    )


def test_memory_limit_sizes() -> None:
    assert Settings.from_env({"MINING_MEMORY_LIMIT": "512MiB"}).memory_limit == 512 * MIB
    assert Settings.from_env({"MINING_MEMORY_LIMIT": "1.5GB"}).memory_limit == 1_500_000_000


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
        ("MAX_LEN", "1" + "0" * 12),
        ("MIN_SUPPORT", "2"),
        ("MIN_SUPPORT", "0 playlists"),
        ("MIN_SUPPORT", "automatic"),
        ("MINING_MEMORY_LIMIT", "2 gigs"),
        ("MINING_MEMORY_LIMIT", "10MiB"),
        ("AUTO_SUPPORT_FLOOR", "0"),
        ("AUTO_SUPPORT_FLOOR", "0.01"),
        ("AUTO_MAX_RULES", "many"),
        ("MINING_HEARTBEAT_SECONDS", "0"),
        ("MINING_ENGINE", "flink"),
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


def test_input_limits_take_units_default_to_512_mib_and_to_half_the_budget() -> None:
    defaults = Settings.from_env({})
    assert defaults.max_download_bytes == 512 * 1024**2
    assert defaults.max_input_bytes is None
    assert defaults.input_limit(3 * 1024**3) == 1536 * 1024**2
    assert Settings.from_env({"MAX_INPUT_SIZE": "1MiB"}).input_limit(3 * 1024**3) == 1024**2
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
        ("MAX_DOWNLOAD_SIZE", "lots", "must be a size such as 512MiB"),
        ("MAX_DOWNLOAD_SIZE", "-1GiB", "must be a size such as"),
        ("MAX_INPUT_SIZE", "0", "must be a size of at least 1 byte"),
        ("MAX_INPUT_SIZE", "2 parsecs", "must be a size such as"),
        ("ALLOW_EMPTY_RULES", "maybe", "must be 1 or 0"),
    ],
)
def test_a_bad_limit_or_flag_names_its_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}=") as raised:
        Settings.from_env({name: value})
    assert message in str(raised.value)
