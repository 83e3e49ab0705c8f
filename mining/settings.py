"""The job's configuration, read from the environment once at start."""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mining.checkpoint import normalise_dataset_url
from mining.engines import ENGINES, engine_problem
from mining.errors import SettingsError
from mining.logsetup import DEFAULT_LOG_FORMAT, parse_log_format
from mining.rulesfile import MiningParameters
from mining.sizes import parse_size

# Bundled with the package so that `python -m mining` works offline with no configuration.
SAMPLE_DATASET = Path(__file__).with_name("data") / "sample_playlists.csv.gz"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Bounds on the input (the mining input's limits): an http(s) dataset larger than this is not
# downloaded (the default leaves room in the manifests' 1 GiB volume), and the CSV text read
# after decompression is bounded too, so a small compressed file cannot expand without end.
DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 1024**2
DEFAULT_MAX_INPUT_BYTES = 512 * 1024**2
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


def _fraction_setting(
    env: Mapping[str, str], name: str, default: float, *, zero_allowed: bool
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    low_ok = value >= 0 if zero_allowed else value > 0
    if not (math.isfinite(value) and low_ok and value <= 1):
        bounds = "between 0 and 1" if zero_allowed else "greater than 0 and at most 1"
        raise SettingsError(f"{name}={raw!r} must be {bounds}")
    return value


def _size_setting(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_size(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} {exc}") from None


def _flag_setting(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE or raw in _FALSE or not raw:
        return raw in _TRUE
    raise SettingsError(f"{name}={raw!r} must be 1 or 0 (also true/false, yes/no, on/off)")


@dataclass(frozen=True)
class Settings:
    """Everything ``python -m mining`` can be told through its environment."""

    dataset_url: str = str(SAMPLE_DATASET)
    data_dir: Path = Path("./ml-data")
    min_support: float = 0.025
    min_confidence: float = 0.7
    max_len: int = 8
    engine: str = "mlxtend"
    log_level: str = "INFO"
    log_format: str = DEFAULT_LOG_FORMAT
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    allow_empty_rules: bool = False

    @property
    def parameters(self) -> MiningParameters:
        """The mining parameters, as recorded in the rules file's header."""
        return MiningParameters(self.min_support, self.min_confidence, self.max_len)

    @property
    def normalised_url(self) -> str:
        """The dataset URL as written to the checkpoint and the rules header."""
        return normalise_dataset_url(self.dataset_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment; raise SettingsError naming the bad variable."""
        env = os.environ if env is None else env
        url = _text(env, "DATASET_URL", cls.dataset_url)
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("", "http", "https", "file"):
            raise SettingsError(
                f"DATASET_URL={url!r}: scheme {scheme!r} is not supported "
                "(use http://, https://, file:// or a path)"
            )
        raw_max_len = _text(env, "MAX_LEN", str(cls.max_len))
        try:
            max_len = int(raw_max_len)
        except ValueError:
            raise SettingsError(f"MAX_LEN={raw_max_len!r} is not a whole number") from None
        if max_len < 2:
            raise SettingsError(
                f"MAX_LEN={raw_max_len!r} must be at least 2 (a rule has two songs)"
            )
        engine = _text(env, "MINING_ENGINE", cls.engine).lower()
        if engine not in ENGINES:
            raise SettingsError(f"MINING_ENGINE={engine!r} must be one of {', '.join(ENGINES)}")
        problem = engine_problem(engine)
        if problem:
            raise SettingsError(f"MINING_ENGINE={engine!r}: {problem}")
        log_level = _text(env, "LOG_LEVEL", cls.log_level).upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={log_level!r} must be one of {', '.join(LOG_LEVELS)}")
        try:
            log_format = parse_log_format(env.get("LOG_FORMAT"))
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            dataset_url=url,
            data_dir=Path(_text(env, "DATA_DIR", str(cls.data_dir))),
            min_support=_fraction_setting(env, "MIN_SUPPORT", cls.min_support, zero_allowed=False),
            min_confidence=_fraction_setting(
                env, "MIN_CONFIDENCE", cls.min_confidence, zero_allowed=True
            ),
            max_len=max_len,
            engine=engine,
            log_level=log_level,
            log_format=log_format,
            max_download_bytes=_size_setting(env, "MAX_DOWNLOAD_SIZE", cls.max_download_bytes),
            max_input_bytes=_size_setting(env, "MAX_INPUT_SIZE", cls.max_input_bytes),
            allow_empty_rules=_flag_setting(env, "ALLOW_EMPTY_RULES"),
        )
