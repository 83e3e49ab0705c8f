"""The job's configuration, read from the environment once at start."""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mining.checkpoint import normalise_dataset_url
from mining.engines import ENGINES, default_engine, engine_problem
from mining.errors import SettingsError
from mining.logsetup import DEFAULT_LOG_FORMAT, parse_log_format
from mining.memory import MIN_LIMIT
from mining.rulesfile import MiningParameters
from mining.sizes import format_size, parse_size
from mining.support import (
    AUTO,
    SupportSpec,
    SupportSpecError,
    parse_support,
    spec_count,
)

# Bundled with the package so that `python -m mining` works offline with no configuration.
SAMPLE_DATASET = Path(__file__).with_name("data") / "sample_playlists.csv.gz"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Bounds on the input (the mining input's limits): an http(s) dataset larger than this is not
# downloaded (the default leaves room in the manifests' 1 GiB volume), and the CSV text read
# after decompression is bounded too, so a small compressed file cannot expand without end.
DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 1024**2
DEFAULT_MAX_INPUT_BYTES = 512 * 1024**2
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

# The mining defaults, in one place (docs/mining.md, --help and docs/mining-memory.md quote them).
DEFAULT_MIN_SUPPORT: SupportSpec = 0.025
DEFAULT_MIN_CONFIDENCE = 0.7
DEFAULT_MAX_LEN = 8
# MIN_SUPPORT=auto never goes below this many playlists: a rule seen in one playlist only
# is one person's taste, not a pattern.
DEFAULT_AUTO_FLOOR = 2
# MIN_SUPPORT=auto raises the count until at most this many rules are left, so the model
# the server loads stays bounded whatever the dataset's size (docs/mining-memory.md).
DEFAULT_AUTO_MAX_RULES = 1_000_000
DEFAULT_HEARTBEAT_SECONDS = 10.0
# Past any playlist's length MAX_LEN changes nothing (it is clamped to the longest); this
# bound only keeps the number a plain integer in the rules header.
MAX_LEN_LIMIT = 2**31 - 1
# A rule has at least two songs: one in the antecedent, the consequent.
MIN_MAX_LEN = 2


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


def _whole_setting(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} must be between {low} and {high}")
    return value


def _support_setting(env: Mapping[str, str]) -> SupportSpec:
    raw = env.get("MIN_SUPPORT", "").strip()
    if not raw:
        return DEFAULT_MIN_SUPPORT
    try:
        return parse_support(raw)
    except SupportSpecError as exc:
        raise SettingsError(f"MIN_SUPPORT={raw!r} {exc}") from None


def _floor_setting(env: Mapping[str, str]) -> int:
    raw = env.get("AUTO_SUPPORT_FLOOR", "").strip()
    if not raw:
        return DEFAULT_AUTO_FLOOR
    try:
        count = spec_count(parse_support(raw if not raw.isdigit() else f"{raw} playlists"))
    except SupportSpecError:
        count = None
    if count is None:
        raise SettingsError(
            f"AUTO_SUPPORT_FLOOR={raw!r} must be a playlist count such as 2 or '2 playlists'"
        )
    return count


def _memory_setting(env: Mapping[str, str]) -> int | None:
    raw = env.get("MINING_MEMORY_LIMIT", "").strip()
    if not raw:
        return None
    try:
        size = parse_size(raw)
    except ValueError as exc:
        raise SettingsError(f"MINING_MEMORY_LIMIT={raw!r} {exc}") from None
    if size < MIN_LIMIT:
        raise SettingsError(
            f"MINING_MEMORY_LIMIT={raw!r} must be at least {format_size(MIN_LIMIT)} "
            "(the interpreter, numpy and an engine alone take about that)"
        )
    return size


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
    min_support: SupportSpec = DEFAULT_MIN_SUPPORT
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    max_len: int = DEFAULT_MAX_LEN
    engine: str = field(default_factory=default_engine)
    log_level: str = "INFO"
    # Bytes the job's process tree may hold; None: a share of what this process may use
    # (``mining.memory.default_limit``), measured when the job starts.
    memory_limit: int | None = None
    auto_floor: int = DEFAULT_AUTO_FLOOR
    auto_max_rules: int = DEFAULT_AUTO_MAX_RULES
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    log_format: str = DEFAULT_LOG_FORMAT
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    allow_empty_rules: bool = False

    @property
    def parameters(self) -> MiningParameters:
        """The mining parameters, as recorded in the rules file's header."""
        auto = self.min_support == AUTO
        return MiningParameters(
            self.min_support,
            self.min_confidence,
            self.max_len,
            auto_floor=self.auto_floor if auto else None,
            auto_max_rules=self.auto_max_rules if auto else None,
        )

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
        raw_max_len = _text(env, "MAX_LEN", str(DEFAULT_MAX_LEN))
        try:
            max_len = int(raw_max_len)
        except ValueError:
            raise SettingsError(f"MAX_LEN={raw_max_len!r} is not a whole number") from None
        if max_len < MIN_MAX_LEN:
            raise SettingsError(
                f"MAX_LEN={raw_max_len!r} must be at least 2 (a rule has two songs)"
            )
        if max_len > MAX_LEN_LIMIT:
            raise SettingsError(
                f"MAX_LEN={raw_max_len!r} must be at most {MAX_LEN_LIMIT} (any value past the "
                "longest playlist mines the same itemsets)"
            )
        engine = _text(env, "MINING_ENGINE", default_engine()).lower()
        if engine not in ENGINES:
            raise SettingsError(f"MINING_ENGINE={engine!r} must be one of {', '.join(ENGINES)}")
        problem = engine_problem(engine)
        if problem:
            raise SettingsError(f"MINING_ENGINE={engine!r}: {problem}")
        log_level = _text(env, "LOG_LEVEL", cls.log_level).upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={log_level!r} must be one of {', '.join(LOG_LEVELS)}")
        raw_heartbeat = env.get("MINING_HEARTBEAT_SECONDS", "").strip()
        heartbeat = DEFAULT_HEARTBEAT_SECONDS
        if raw_heartbeat:
            try:
                heartbeat = float(raw_heartbeat)
            except ValueError:
                heartbeat = math.nan
            if not (math.isfinite(heartbeat) and heartbeat > 0):
                raise SettingsError(
                    f"MINING_HEARTBEAT_SECONDS={raw_heartbeat!r} must be a number of seconds > 0"
                )
        try:
            log_format = parse_log_format(env.get("LOG_FORMAT"))
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            dataset_url=url,
            data_dir=Path(_text(env, "DATA_DIR", str(cls.data_dir))),
            min_support=_support_setting(env),
            min_confidence=_fraction_setting(
                env, "MIN_CONFIDENCE", DEFAULT_MIN_CONFIDENCE, zero_allowed=True
            ),
            max_len=max_len,
            engine=engine,
            log_level=log_level,
            memory_limit=_memory_setting(env),
            auto_floor=_floor_setting(env),
            auto_max_rules=_whole_setting(
                env, "AUTO_MAX_RULES", DEFAULT_AUTO_MAX_RULES, 1, 2**32 - 1
            ),
            heartbeat_seconds=heartbeat,
            log_format=log_format,
            max_download_bytes=_size_setting(env, "MAX_DOWNLOAD_SIZE", cls.max_download_bytes),
            max_input_bytes=_size_setting(env, "MAX_INPUT_SIZE", cls.max_input_bytes),
            allow_empty_rules=_flag_setting(env, "ALLOW_EMPTY_RULES"),
        )
