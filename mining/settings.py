"""The job's configuration, read from the environment once at start."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mining.checkpoint import normalise_dataset_url
from mining.engines import ENGINES, default_engine, engine_problem
from mining.envsettings import EnvReader, invalid
from mining.logsetup import DEFAULT_LOG_FORMAT, parse_log_format
from mining.memory import MIN_LIMIT
from mining.rulesfile import MiningParameters
from mining.sizes import format_size
from mining.spark import SparkOptions
from mining.support import (
    AUTO,
    SupportSpec,
    SupportSpecError,
    parse_support,
    spec_count,
)

# Bundled with the package so that `python -m mining` works offline with no configuration.
SAMPLE_DATASET = Path(__file__).with_name("data") / "sample_playlists.csv.gz"
# Bounds on the input (the mining input's limits): an http(s) dataset larger than this is not
# downloaded (the default leaves room in the manifests' 1 GiB volume), and the CSV text read
# after decompression is bounded too, so a small compressed file cannot expand without end.
DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 1024**2
# Without MAX_INPUT_SIZE the job reads at most this share of its memory budget in CSV text:
# rows shaped like the real ones take ~1.3x their size once read (docs/reliability-data.md),
# and the rest of the budget is left for mining. The budget's guard bounds the memory anyway.
INPUT_SHARE_OF_BUDGET = 0.5

# The mining defaults, in one place (docs/mining.md, --help and docs/mining-memory.md quote them).
# Chosen by the evaluation (docs/evaluation.md): on real playlists, pairs (MAX_LEN 2) mined at
# the lowest support the budget allows, with a low confidence, and ranked by the sum of the
# confidences (the server's RANKING=sum), beat item-kNN; longer itemsets add little and are
# what explodes on long playlists.
DEFAULT_MIN_SUPPORT: SupportSpec = AUTO
DEFAULT_MIN_CONFIDENCE = 0.05
DEFAULT_MAX_LEN = 2
# MIN_SUPPORT=auto never goes below this many playlists. One: on small datasets a pair seen
# in a single playlist is the only evidence there is, and the sum ranking lets pairs seen in
# many playlists outweigh it (the evaluation's floor-2 run fires for far fewer queries).
DEFAULT_AUTO_FLOOR = 1
# MIN_SUPPORT=auto raises the count until at most this many rules are left, so the model
# the server loads stays bounded whatever the dataset's size (docs/mining-memory.md).
DEFAULT_AUTO_MAX_RULES = 1_000_000
DEFAULT_HEARTBEAT_SECONDS = 10.0
# Past any playlist's length MAX_LEN changes nothing (it is clamped to the longest); this
# bound only keeps the number a plain integer in the rules header.
MAX_LEN_LIMIT = 2**31 - 1


def _support_setting(env: EnvReader) -> SupportSpec:
    raw = env.raw("MIN_SUPPORT")
    if raw is None:
        return DEFAULT_MIN_SUPPORT
    try:
        return parse_support(raw)
    except SupportSpecError:
        raise invalid(
            "MIN_SUPPORT",
            raw,
            "a fraction of the playlists (0 < x <= 1), 'N playlists' (N >= 1) or 'auto'",
        ) from None


def _floor_setting(env: EnvReader) -> int:
    raw = env.raw("AUTO_SUPPORT_FLOOR")
    if raw is None:
        return DEFAULT_AUTO_FLOOR
    try:
        count = spec_count(parse_support(raw if not raw.isdigit() else f"{raw} playlists"))
    except SupportSpecError:
        count = None
    if count is None:
        raise invalid("AUTO_SUPPORT_FLOOR", raw, "a playlist count such as 2 or '2 playlists'")
    return count


def _url_setting(env: EnvReader, default: str, engine: str) -> str:
    url = env.text("DATASET_URL", default)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    # Spark also reads its cluster's Hadoop filesystems (s3a://, hdfs://, ...) itself.
    if scheme not in ("", "http", "https", "file") and engine != "spark":
        raise invalid(
            "DATASET_URL",
            url,
            "an http://, https:// or file:// URL, or a path",
            "MINING_ENGINE=spark also reads Hadoop filesystem URLs such as s3a://",
        )
    return url


def _engine_setting(env: EnvReader) -> str:
    engine = env.choice("MINING_ENGINE", ENGINES, default_engine())
    problem = engine_problem(engine)
    if problem:
        installed = [e for e in ENGINES if engine_problem(e) is None]
        accepted = f"one of the engines installed here ({', '.join(installed) or 'none'})"
        raise invalid("MINING_ENGINE", engine, accepted, problem)
    return engine


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
    # The most CSV text read; None: INPUT_SHARE_OF_BUDGET of the memory budget.
    max_input_bytes: int | None = None
    allow_empty_rules: bool = False
    # SPARK_MASTER and SPARK_CONF, read only when MINING_ENGINE=spark.
    spark: SparkOptions = field(default_factory=SparkOptions)

    def input_limit(self, budget: int) -> int:
        """The most CSV text the job reads, given its memory budget in bytes."""
        if self.max_input_bytes is not None:
            return self.max_input_bytes
        return int(budget * INPUT_SHARE_OF_BUDGET)

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
        read = EnvReader(env)
        engine = _engine_setting(read)
        return cls(
            dataset_url=_url_setting(read, cls.dataset_url, engine),
            data_dir=Path(read.text("DATA_DIR", str(cls.data_dir))),
            min_support=_support_setting(read),
            min_confidence=read.number("MIN_CONFIDENCE", DEFAULT_MIN_CONFIDENCE, 0, 1),
            max_len=read.integer(
                "MAX_LEN",
                DEFAULT_MAX_LEN,
                2,
                MAX_LEN_LIMIT,
                note="a rule has two songs; past the longest playlist any value mines the same",
            ),
            engine=engine,
            log_level=read.log_level(cls.log_level),
            memory_limit=read.optional_size(
                "MINING_MEMORY_LIMIT",
                MIN_LIMIT,
                format_size(MIN_LIMIT),
                note="the interpreter, numpy and an engine alone take about that",
            ),
            auto_floor=_floor_setting(read),
            auto_max_rules=read.integer("AUTO_MAX_RULES", DEFAULT_AUTO_MAX_RULES, 1, 2**32 - 1),
            heartbeat_seconds=read.number(
                "MINING_HEARTBEAT_SECONDS",
                DEFAULT_HEARTBEAT_SECONDS,
                0,
                low_open=True,
                unit="seconds",
            ),
            log_format=parse_log_format(read.env.get("LOG_FORMAT")),
            max_download_bytes=read.size("MAX_DOWNLOAD_SIZE", cls.max_download_bytes),
            max_input_bytes=read.optional_size("MAX_INPUT_SIZE"),
            allow_empty_rules=read.flag("ALLOW_EMPTY_RULES", cls.allow_empty_rules),
            spark=SparkOptions.from_env(read.env) if engine == "spark" else SparkOptions(),
        )
