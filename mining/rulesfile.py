"""The rules file ``rules.cbor``: a self-describing CBOR header plus packed numeric arrays.

Both the miner (writer) and the server (reader) use this module, so it imports
neither mlxtend nor pandas. The arrays are RFC 8746 typed arrays (tag 70,
uint32 little-endian) so that 300k rules decode in milliseconds into a handful
of numpy arrays instead of millions of Python objects. See docs/rules-format.md.

This module writes the file; its data model (mining/rulestypes.py) and its reader
(mining/rulesread.py) are re-exported here, the one module the rest of the project imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import numpy.typing as npt

from mining.atomicfile import atomic_write_bytes
from mining.rulesread import (
    check_size,
    decode_header,
    decode_header_prefix,
    decode_rules,
    read_rules,
    read_rules_header,
    size_bounds,
    validate,
)
from mining.rulestypes import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER_PREFIX_BYTES,
    MAX_MEAN_SONG_NAME_BYTES,
    MAX_RULES_FILE_BYTES,
    RULES_FILENAME,
    TAG_UINT32_LE,
    U32,
    MiningParameters,
    RuleSet,
    RulesFileError,
    RulesFileMissingError,
    RulesHeader,
)
from mining.support import spec_text

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_PREFIX_BYTES",
    "MAX_MEAN_SONG_NAME_BYTES",
    "MAX_RULES_FILE_BYTES",
    "RULES_FILENAME",
    "TAG_UINT32_LE",
    "MiningParameters",
    "RuleSet",
    "RulesFileError",
    "RulesFileMissingError",
    "RulesHeader",
    "check_size",
    "decode_header",
    "decode_header_prefix",
    "decode_rules",
    "encode_rules",
    "pack_rules",
    "read_rules",
    "read_rules_header",
    "size_bounds",
    "validate",
    "write_rules",
]


def pack_rules(
    rules: Iterable[tuple[Sequence[int], int, int, int]],
) -> tuple[U32, U32, U32, U32, U32]:
    """Pack ``(antecedent ids, consequent id, rule count, antecedent count)`` tuples.

    Rules come out in a canonical order (antecedent length, antecedent, consequent) and
    antecedents sorted, so the same rule set always gives the same bytes. The ordering is one
    numpy lexsort over a padded antecedent matrix, not a sort of Python tuples.
    """
    rules = list(rules)
    n = len(rules)
    lengths = np.fromiter((len(r[0]) for r in rules), dtype=np.int64, count=n)
    flat = np.fromiter(
        (s for r in rules for s in sorted(r[0])), dtype=np.uint32, count=int(lengths.sum())
    )
    consequents = np.fromiter((r[1] for r in rules), dtype=np.uint32, count=n)
    counts = np.fromiter((r[2] for r in rules), dtype=np.uint32, count=n)
    ante_counts = np.fromiter((r[3] for r in rules), dtype=np.uint32, count=n)
    width = int(lengths.max()) if n else 0
    starts = np.cumsum(lengths) - lengths
    rows = np.repeat(np.arange(n), lengths)
    padded = np.zeros((n, width), dtype=np.uint32)
    padded[rows, np.arange(len(flat)) - starts[rows]] = flat
    # lexsort's last key is the primary one: length, then each antecedent position, then c.
    keys: list[npt.NDArray[np.integer]] = [consequents]
    keys += [padded[:, i] for i in reversed(range(width))]
    keys.append(lengths)
    order = np.lexsort(np.vstack([k.astype(np.int64) for k in keys]))
    lengths = lengths[order]
    offsets = np.zeros(n + 1, dtype=np.uint32)
    offsets[1:] = np.cumsum(lengths, dtype=np.uint32)
    padded = padded[order]
    songs = padded[np.arange(width) < lengths[:, None]]
    return offsets, songs, consequents[order], counts[order], ante_counts[order]


def _typed(array: U32) -> cbor2.CBORTag:
    return cbor2.CBORTag(TAG_UINT32_LE, np.ascontiguousarray(array, dtype="<u4").tobytes())


def encode_rules(ruleset: RuleSet) -> bytes:
    """Serialise a rule set (validated first) to CBOR bytes a reader will accept."""
    validate(ruleset)
    h = ruleset.header
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "header": {
            "package_version": h.package_version,
            "dataset_url": h.dataset_url,
            "generated_ns": h.generated_ns,
            "parameters": _encode_parameters(h),
            "engine": h.engine,
            "transactions": h.transactions,
            "song_count": h.song_count,
            "rule_count": h.rule_count,
        },
        "songs": {
            "names": list(ruleset.song_names),
            "playlist_counts": _typed(ruleset.song_counts),
        },
        "rules": {
            "antecedent_offsets": _typed(ruleset.antecedent_offsets),
            "antecedent_songs": _typed(ruleset.antecedent_songs),
            "consequents": _typed(ruleset.consequents),
            "rule_counts": _typed(ruleset.rule_counts),
            "antecedent_counts": _typed(ruleset.antecedent_counts),
        },
    }
    data = cbor2.dumps(document)
    # The writer refuses what every reader would: the same checks on the same bytes.
    check_size(decode_header_prefix(data[:HEADER_PREFIX_BYTES]), len(data))
    return data


def _encode_parameters(header: RulesHeader) -> dict[str, Any]:
    p = header.parameters
    count = header.min_count
    assert count is not None  # set by RulesHeader.__post_init__
    # min_support stays a number, as readers of the first files expect: the fraction
    # given, or for the other specs the fraction the count amounts to.
    if not isinstance(p.min_support, str):
        fraction = float(p.min_support)
    else:
        fraction = count / header.transactions if header.transactions else 1.0
    encoded: dict[str, Any] = {
        "min_support": fraction,
        "min_confidence": p.min_confidence,
        "max_len": p.max_len,
        "min_support_requested": spec_text(p.min_support),
        "min_count": count,
    }
    if p.auto_floor is not None:
        encoded["auto_floor"] = p.auto_floor
    if p.auto_max_rules is not None:
        encoded["auto_max_rules"] = p.auto_max_rules
    return encoded


def write_rules(path: Path, ruleset: RuleSet) -> int:
    """Atomically write the rules file; return its size in bytes."""
    data = encode_rules(ruleset)
    atomic_write_bytes(Path(path), data)
    return len(data)
