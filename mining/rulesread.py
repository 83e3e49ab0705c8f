"""Reading a rules file: every bound checked before reading on, every field and array checked
against the header (a file from anywhere may be truncated, hostile or of another format)."""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

import cbor2
import numpy as np

from mining.regularfile import UnsafeFileError, open_regular, read_exactly
from mining.rulestypes import (
    _OVERHEAD_BYTES,
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER_PREFIX_BYTES,
    MAX_MEAN_SONG_NAME_BYTES,
    MAX_RULES_FILE_BYTES,
    TAG_UINT32_LE,
    U32,
    MiningParameters,
    RuleSet,
    RulesFileError,
    RulesFileMissingError,
    RulesHeader,
)
from mining.support import SupportSpec, SupportSpecError, fixed_count, parse_support

# CBOR (RFC 8949 3): a map is major type 5; additional information 28-30 is reserved; below 24
# it is the entry count itself.
_CBOR_MAP = 5
_CBOR_RESERVED = range(28, 31)
_CBOR_INLINE_COUNT_LIMIT = 24
# Additional information 24-27: the count follows in 1, 2, 4 or 8 bytes.
_CBOR_COUNT_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}


def _decode_parameters(p: Any, transactions: int) -> tuple[MiningParameters, int]:
    """The requested parameters and the resolved count (derived for files that predate it)."""
    fraction = float(_get(p, "min_support", (int, float), "parameters"))
    requested: SupportSpec = fraction
    if "min_support_requested" in p:
        text = _get(p, "min_support_requested", str, "parameters")
        try:
            requested = parse_support(text)
        except SupportSpecError as exc:
            raise RulesFileError(f"rules file: parameters.min_support_requested: {exc}") from exc
    optional = {
        name: _get(p, name, int, "parameters") if name in p else None
        for name in ("min_count", "auto_floor", "auto_max_rules")
    }
    count = optional["min_count"]
    if count is None:
        count = fixed_count(requested, transactions)
        if count is None:
            raise RulesFileError("rules file: parameters.min_count is missing for 'auto'")
    parameters = MiningParameters(
        min_support=requested,
        min_confidence=float(_get(p, "min_confidence", (int, float), "parameters")),
        max_len=_get(p, "max_len", int, "parameters"),
        auto_floor=optional["auto_floor"],
        auto_max_rules=optional["auto_max_rules"],
    )
    return parameters, count


def _get(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, dict):
        raise RulesFileError(f"rules file: {where} is not a map")
    if key not in mapping:
        raise RulesFileError(f"rules file: {where}.{key} is missing")
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RulesFileError(f"rules file: {where}.{key} has the wrong type")
    return value


def _array(mapping: Any, key: str, where: str) -> U32:
    tagged = _get(mapping, key, cbor2.CBORTag, where)
    if tagged.tag != TAG_UINT32_LE or not isinstance(tagged.value, bytes):
        raise RulesFileError(f"rules file: {where}.{key} is not a uint32 little-endian array")
    if len(tagged.value) % 4:
        raise RulesFileError(f"rules file: {where}.{key} has a partial element")
    return np.frombuffer(tagged.value, dtype="<u4").astype(np.uint32, copy=False)


def decode_header(document: Any) -> RulesHeader:
    """Check the format name and version and return the header of a decoded document."""
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise RulesFileError("not a playlist-recommender rules file (format name missing)")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise RulesFileError(
            f"rules file format version {version!r} is not supported (this reader knows "
            f"{FORMAT_VERSION})"
        )
    h = _get(document, "header", dict, "document")
    p = _get(h, "parameters", dict, "header")
    transactions = _get(h, "transactions", int, "header")
    parameters, count = _decode_parameters(p, transactions)
    return RulesHeader(
        package_version=_get(h, "package_version", str, "header"),
        dataset_url=_get(h, "dataset_url", str, "header"),
        generated_ns=_get(h, "generated_ns", int, "header"),
        parameters=parameters,
        engine=_get(h, "engine", str, "header"),
        transactions=transactions,
        song_count=_get(h, "song_count", int, "header"),
        rule_count=_get(h, "rule_count", int, "header"),
        min_count=count,
    )


def decode_header_prefix(prefix: bytes) -> RulesHeader:
    """The header from the first bytes of a rules file, without decoding the rest.

    The document is a map whose first entries are "format", "format_version" and "header";
    each entry is decoded on its own, so the song table and the rules are never touched.
    """
    stream = io.BytesIO(prefix)
    decoder = cbor2.CBORDecoder(stream)
    first = stream.read(1)
    if not first or first[0] >> 5 != _CBOR_MAP or first[0] & 31 in _CBOR_RESERVED:
        raise RulesFileError("not a playlist-recommender rules file (not a CBOR map)")
    info = first[0] & 31
    if info < _CBOR_INLINE_COUNT_LIMIT:
        wanted = min(3, info)  # a short map: the entry count is in the first byte
    else:
        # The count follows in 1, 2, 4 or 8 bytes (none: indefinite length); the loop below
        # needs only the first three entries.
        length_bytes = _CBOR_COUNT_BYTES.get(info, 0)
        wanted = min(3, int.from_bytes(stream.read(length_bytes), "big")) if length_bytes else 3
    entries: dict[object, object] = {}
    try:
        while len(entries) < wanted:
            key = decoder.decode()
            entries[key] = decoder.decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, cbor2.CBORDecodeEOF) and len(prefix) >= HEADER_PREFIX_BYTES:
            raise RulesFileError(
                f"rules file: the header does not fit in the first {HEADER_PREFIX_BYTES} bytes"
            ) from exc
        raise RulesFileError(f"rules file is not valid CBOR (truncated?): {exc}") from exc
    return decode_header(entries)


def size_bounds(header: RulesHeader) -> tuple[int, int]:
    """The fewest and the most bytes a rules file with this header can take."""
    songs, rules = header.song_count, header.rule_count
    longest_antecedent = max(1, min(header.parameters.max_len - 1, songs))
    # Arrays that are exactly sized by the header, and antecedents of at least one song each.
    fixed = 4 * songs + 4 * (rules + 1) + 3 * 4 * rules
    least = fixed + 4 * rules + songs  # every name takes at least its one-byte CBOR head
    most = (
        fixed
        + 4 * rules * longest_antecedent
        + songs * (9 + MAX_MEAN_SONG_NAME_BYTES)
        + _OVERHEAD_BYTES
    )
    return least, most


def check_size(header: RulesHeader, size: int) -> None:
    """Raise RulesFileError unless a file of ``size`` bytes can hold what ``header`` says."""
    if size > MAX_RULES_FILE_BYTES:
        raise RulesFileError(
            f"rules file is {size} bytes, larger than the {MAX_RULES_FILE_BYTES} a reader accepts"
        )
    least, most = size_bounds(header)
    if size < least:
        raise RulesFileError(
            f"rules file is truncated: {size} bytes, fewer than the {least} its header "
            f"({header.song_count} songs, {header.rule_count} rules) needs"
        )
    if size > most:
        raise RulesFileError(
            f"rules file is {size} bytes, more than the {most} its header "
            f"({header.song_count} songs, {header.rule_count} rules) allows"
        )


def _map_entries(stream: io.BytesIO) -> int | None:
    """The entry count of the definite-length map at the stream's position, read past its head;
    None, the position unchanged, for any other item."""
    start = stream.tell()
    first = stream.read(1)
    if first and first[0] >> 5 == _CBOR_MAP:
        info = first[0] & 31
        if info < _CBOR_INLINE_COUNT_LIMIT:
            return info
        if info in _CBOR_COUNT_BYTES:
            count = stream.read(_CBOR_COUNT_BYTES[info])
            if len(count) == _CBOR_COUNT_BYTES[info]:
                return int.from_bytes(count, "big")
    stream.seek(start)
    return None


def _decode_in_steps(stream: io.BytesIO, decoder: cbor2.CBORDecoder, levels: int) -> Any:
    """The item at the stream's position, a map's entries (``levels`` deep) each decoded by a
    call of its own."""
    count = _map_entries(stream) if levels else None
    if count is None:
        return decoder.decode()
    entries = {}
    for _ in range(count):
        key = decoder.decode()
        entries[key] = _decode_in_steps(stream, decoder, levels - 1)
    return entries


def _loads_in_steps(data: bytes) -> Any:
    """``cbor2.loads(data)`` for a rules document, but each of its arrays decoded by a call of
    its own: one call holds the GIL for the whole file, and during a reload the event loop's
    thread waits that long for it; a call per array, for one array's time at most
    (docs/performance.md measures both)."""
    stream = io.BytesIO(data)
    return _decode_in_steps(stream, cbor2.CBORDecoder(stream), levels=2)


def decode_rules(data: bytes) -> RuleSet:
    """Parse CBOR bytes into a validated rule set; raise RulesFileError on anything wrong."""
    try:
        document = _loads_in_steps(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
        raise RulesFileError(f"rules file is not valid CBOR (truncated?): {exc}") from exc
    header = decode_header(document)
    songs = _get(document, "songs", dict, "document")
    rules = _get(document, "rules", dict, "document")
    names = _get(songs, "names", list, "songs")
    if not all(isinstance(n, str) for n in names):
        raise RulesFileError("rules file: songs.names holds a non-string")
    ruleset = RuleSet(
        header=header,
        song_names=tuple(names),
        song_counts=_array(songs, "playlist_counts", "songs"),
        antecedent_offsets=_array(rules, "antecedent_offsets", "rules"),
        antecedent_songs=_array(rules, "antecedent_songs", "rules"),
        consequents=_array(rules, "consequents", "rules"),
        rule_counts=_array(rules, "rule_counts", "rules"),
        antecedent_counts=_array(rules, "antecedent_counts", "rules"),
    )
    validate(ruleset)
    return ruleset


def _read(path: Path, whole: bool) -> tuple[RulesHeader, bytes]:
    """The header, and the whole file if ``whole``; every bound checked before reading on."""
    try:
        with open_regular(Path(path)) as (file, size):
            if size > MAX_RULES_FILE_BYTES:
                raise UnsafeFileError(
                    errno.EFBIG, f"{size} bytes, larger than the {MAX_RULES_FILE_BYTES} accepted"
                )
            header = decode_header_prefix(file.read(HEADER_PREFIX_BYTES))
            check_size(header, size)
            if not whole:
                return header, b""
            file.seek(0)
            return header, read_exactly(file, size)
    except FileNotFoundError as exc:
        raise RulesFileMissingError(f"cannot read rules file {path}: {exc.strerror}") from exc
    except OSError as exc:
        raise RulesFileError(f"cannot read rules file {path}: {exc.strerror or exc}") from exc


def read_rules(path: Path) -> RuleSet:
    """Read and validate a rules file (a regular file; its size checked against its header)."""
    _, data = _read(path, whole=True)
    return decode_rules(data)


def read_rules_header(path: Path) -> RulesHeader:
    """Read only the header of a rules file (its first bytes), checked as read_rules does."""
    header, _ = _read(path, whole=False)
    return header


def validate(ruleset: RuleSet) -> None:
    """Check that the arrays agree with each other and with the header (vectorised, cheap)."""
    h = ruleset.header
    n_songs, n_rules = h.song_count, h.rule_count
    problems = []
    if len(ruleset.song_names) != n_songs or len(ruleset.song_counts) != n_songs:
        problems.append(f"song table has {len(ruleset.song_names)} names for {n_songs} songs")
    if len(set(ruleset.song_names)) != len(ruleset.song_names):
        problems.append("song names are not distinct")
    for name in ("consequents", "rule_counts", "antecedent_counts"):
        if len(getattr(ruleset, name)) != n_rules:
            problems.append(f"{name} has {len(getattr(ruleset, name))} entries for {n_rules} rules")
    offsets = ruleset.antecedent_offsets
    if len(offsets) != n_rules + 1:
        problems.append(f"antecedent_offsets has {len(offsets)} entries for {n_rules} rules")
    elif offsets[0] != 0 or offsets[-1] != len(ruleset.antecedent_songs):
        problems.append("antecedent_offsets do not span antecedent_songs")
    elif n_rules and bool(np.any(np.diff(offsets.astype(np.int64)) < 1)):
        problems.append("an antecedent is empty or offsets decrease")
    if not problems:
        if n_rules and (
            int(ruleset.consequents.max()) >= n_songs
            or (len(ruleset.antecedent_songs) and int(ruleset.antecedent_songs.max()) >= n_songs)
        ):
            problems.append("a rule names a song id outside the song table")
        if n_rules and bool(
            np.any(ruleset.rule_counts == 0)
            or np.any(ruleset.rule_counts > ruleset.antecedent_counts)
            or np.any(ruleset.antecedent_counts > h.transactions)
        ):
            problems.append("rule counts are inconsistent (0 < count(A∪c) ≤ count(A) ≤ n)")
        if n_songs and int(ruleset.song_counts.max()) > h.transactions:
            problems.append("a song's playlist count exceeds the transaction count")
    if problems:
        raise RulesFileError("rules file is inconsistent: " + "; ".join(problems))
