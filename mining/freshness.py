"""Whether DATA_DIR already holds the rules the settings ask for: the job's skip decision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mining.checkpoint import CHECKPOINT_FILENAME, CheckpointError, read_checkpoint
from mining.datadir import NotCommittedError, read_committed_rules
from mining.quoting import redact_url
from mining.rulesfile import MiningParameters, RulesFileError, RulesHeader
from mining.settings import Settings
from mining.support import spec_text
from mining.version import __version__


@dataclass(frozen=True)
class Freshness:
    """Whether DATA_DIR already holds the requested rules, and why (not)."""

    up_to_date: bool
    detail: str
    # The header of the rules in place, and the file they were read from, when up to date.
    header: RulesHeader | None = None
    rules_path: Path | None = None


def describe_parameters(parameters: MiningParameters) -> str:
    """The parameters as the log and messages show them."""
    auto = (
        f" auto_floor={parameters.auto_floor} auto_max_rules={parameters.auto_max_rules}"
        if parameters.auto_floor is not None
        else ""
    )
    return (
        f"min_support={spec_text(parameters.min_support)} "
        f"min_confidence={parameters.min_confidence!r} max_len={parameters.max_len}{auto}"
    )


def check_freshness(settings: Settings) -> Freshness:
    """Compare DATA_DIR's checkpoint and rules with what ``settings`` asks for."""
    data_dir = settings.data_dir
    try:
        checkpoint = read_checkpoint(data_dir / CHECKPOINT_FILENAME)
    except CheckpointError as exc:
        return Freshness(False, f"no usable checkpoint ({exc})")
    if checkpoint.version != __version__:
        return Freshness(False, f"checkpoint is from version {checkpoint.version}")
    url = settings.normalised_url
    if checkpoint.dataset_url != url:
        return Freshness(False, f"dataset URL changed (was {redact_url(checkpoint.dataset_url)})")
    try:
        rules_path, ruleset = read_committed_rules(data_dir, checkpoint)
    except NotCommittedError:
        return Freshness(False, "rules file does not match the checkpoint (an interrupted run?)")
    except RulesFileError as exc:
        return Freshness(False, f"rules file unusable ({exc})")
    header = ruleset.header
    if header.parameters != settings.parameters:
        return Freshness(
            False, f"parameters changed (were {describe_parameters(header.parameters)})"
        )
    return Freshness(
        True,
        f"{header.rule_count} rules from {redact_url(url)} mined at {checkpoint.model_date} UTC "
        f"with {describe_parameters(header.parameters)}",
        header,
        rules_path,
    )
