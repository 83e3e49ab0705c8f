"""The rules file: round trip, canonical bytes, and a clear error for every kind of damage."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mining import rulesfile, rulesread
from mining.rulesfile import (
    TAG_UINT32_LE,
    MiningParameters,
    RuleSet,
    RulesFileError,
    decode_rules,
    encode_rules,
    read_rules,
    write_rules,
)
from tests.helpers.processes import run_python
from tests.helpers.rules import HeaderFields, Rule, build_ruleset, synthetic_ruleset

SONGS = ("Tyler, The Creator", 'City Of Stars - From "La La Land"', "Ünïcödé", "plain")
COUNTS = (90, 80, 70, 60)
RULES: list[Rule] = [((0,), 1, 70, 90), ((0, 2), 1, 60, 65), ((2, 0), 3, 50, 65), ((1,), 0, 70, 80)]


def make_ruleset(
    rules: Sequence[Rule] = RULES,
    songs: Sequence[str] = SONGS,
    counts: Sequence[int] = COUNTS,
    transactions: int = 100,
) -> RuleSet:
    fields = HeaderFields(
        transactions=transactions,
        version="1.2.3",
        dataset_url="file:///data/playlists%20one.csv",
        engine="mlxtend",
    )
    return build_ruleset(songs, counts, rules, fields)


def test_round_trip_keeps_header_and_rules(tmp_path: Path) -> None:
    ruleset = make_ruleset()
    size = write_rules(tmp_path / rulesfile.RULES_FILENAME, ruleset)
    back = read_rules(tmp_path / rulesfile.RULES_FILENAME)
    assert size == (tmp_path / rulesfile.RULES_FILENAME).stat().st_size
    assert back.header == ruleset.header
    assert back.song_names == SONGS
    assert back.same_rules(ruleset)
    assert set(back.iter_rules()) == {
        (("Tyler, The Creator",), 'City Of Stars - From "La La Land"', 70, 90),
        (("Tyler, The Creator", "Ünïcödé"), 'City Of Stars - From "La La Land"', 60, 65),
        (("Tyler, The Creator", "Ünïcödé"), "plain", 50, 65),
        (('City Of Stars - From "La La Land"',), "Tyler, The Creator", 70, 80),
    }
    assert list(tmp_path.iterdir()) == [tmp_path / rulesfile.RULES_FILENAME]


def test_same_rules_in_any_order_give_identical_bytes() -> None:
    assert encode_rules(make_ruleset(RULES)) == encode_rules(make_ruleset(RULES[::-1]))


def test_header_is_self_describing_cbor() -> None:
    document = cbor2.loads(encode_rules(make_ruleset()))
    assert document["format"] == "playlist-recommender/rules"
    assert document["format_version"] == 1
    assert document["header"]["rule_count"] == len(RULES)
    assert document["header"]["parameters"] == {
        "min_support": 0.025,
        "min_confidence": 0.7,
        "max_len": 8,
        # What the user gave, and the count it means for the header's 100 transactions.
        "min_support_requested": "0.025",
        "min_count": 3,
    }
    assert document["rules"]["consequents"].tag == 70


def test_unknown_format_version_is_refused() -> None:
    document = cbor2.loads(encode_rules(make_ruleset()))
    document["format_version"] = 2
    with pytest.raises(RulesFileError, match="format version 2 is not supported"):
        decode_rules(cbor2.dumps(document))


def test_other_cbor_is_refused() -> None:
    with pytest.raises(RulesFileError, match="not a playlist-recommender rules file"):
        decode_rules(cbor2.dumps({"hello": "world"}))


@pytest.mark.parametrize("cut", [1, 10, 100, -1])
def test_truncated_file_is_refused(cut: int) -> None:
    data = encode_rules(make_ruleset())
    with pytest.raises(RulesFileError):
        decode_rules(data[:cut])


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError, match=r"cannot read rules file .*rules\.cbor"):
        read_rules(tmp_path / "rules.cbor")


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("rules", "consequents", cbor2.CBORTag(70, b"\x09\0\0\0" * 4), "outside the song table"),
        ("rules", "rule_counts", cbor2.CBORTag(70, b"\x01\0\0\0" * 3), "3 entries for 4 rules"),
        ("rules", "antecedent_counts", cbor2.CBORTag(70, b"\x01\0\0\0" * 4), "inconsistent"),
        ("rules", "consequents", cbor2.CBORTag(71, b"\0\0\0\0" * 4), "uint32 little-endian"),
        ("rules", "consequents", b"\0\0\0\0" * 4, "wrong type"),
        ("songs", "names", ["a", "a", "b", "c"], "not distinct"),
        ("songs", "names", ["a", 2, "b", "c"], "non-string"),
        ("header", "generated_ns", "soon", "wrong type"),
    ],
)
def test_inconsistent_content_is_refused(
    section: str, key: str, value: object, message: str
) -> None:
    document = cbor2.loads(encode_rules(make_ruleset()))
    document[section][key] = value
    with pytest.raises(RulesFileError, match=message):
        decode_rules(cbor2.dumps(document))


def test_writer_refuses_an_inconsistent_rule_set(tmp_path: Path) -> None:
    bad = dataclasses.replace(make_ruleset(), song_names=SONGS[:3])
    with pytest.raises(RulesFileError, match="song table"):
        write_rules(tmp_path / "rules.cbor", bad)
    assert list(tmp_path.iterdir()) == []


rule_strategy = st.tuples(
    st.frozensets(st.integers(0, 5), min_size=1, max_size=4),
    st.integers(0, 5),
    st.integers(1, 50),
    st.integers(0, 50),
)


@given(st.lists(rule_strategy, max_size=30, unique_by=lambda r: (r[0], r[1])))
def test_round_trip_property(raw_rules: list[tuple[frozenset[int], int, int, int]]) -> None:
    rules = [(tuple(a), c, n, n + extra) for a, c, n, extra in raw_rules]
    songs = tuple(f"song {i}" for i in range(6))
    ruleset = make_ruleset(rules, songs, (100,) * 6, transactions=100)
    back = decode_rules(encode_rules(ruleset))
    expected = {(tuple(songs[s] for s in sorted(a)), songs[c], n, na) for a, c, n, na in rules}
    assert set(back.iter_rules()) == expected


def _with_parameters(parameters: MiningParameters, min_count: int | None) -> RuleSet:
    ruleset = make_ruleset()
    header = dataclasses.replace(ruleset.header, parameters=parameters, min_count=min_count)
    return dataclasses.replace(ruleset, header=header)


@pytest.mark.parametrize(
    ("parameters", "min_count", "recorded"),
    [
        (
            MiningParameters("auto", 0.05, 2, auto_floor=2, auto_max_rules=1000),
            4,
            {
                "min_support": 0.04,
                "min_support_requested": "auto",
                "min_count": 4,
                "auto_floor": 2,
                "auto_max_rules": 1000,
            },
        ),
        (
            MiningParameters("3 playlists", 0.05, 2),
            3,
            {"min_support": 0.03, "min_support_requested": "3 playlists", "min_count": 3},
        ),
        (
            MiningParameters(1e-9, 0.05, 2),
            None,
            {"min_support": 1e-9, "min_support_requested": "1e-09", "min_count": 1},
        ),
    ],
)
def test_the_support_given_and_the_count_it_resolved_to_round_trip(
    parameters: MiningParameters, min_count: int | None, recorded: dict[str, object]
) -> None:
    ruleset = _with_parameters(parameters, min_count)
    document = cbor2.loads(encode_rules(ruleset))
    assert document["format_version"] == 1
    assert document["header"]["parameters"] == {
        "min_confidence": 0.05,
        "max_len": 2,
        **recorded,
    }
    back = decode_rules(encode_rules(ruleset))
    assert back.header == ruleset.header
    assert back.header.parameters == parameters
    assert back.header.min_count == recorded["min_count"]


def test_a_file_from_before_the_support_forms_still_reads() -> None:
    # The first files had only the fraction: the request is that fraction, the count derived.
    document = cbor2.loads(encode_rules(make_ruleset()))
    parameters = document["header"]["parameters"]
    del parameters["min_support_requested"], parameters["min_count"]
    header = decode_rules(cbor2.dumps(document)).header
    assert header.parameters == MiningParameters(0.025, 0.7, 8)
    assert header.min_count == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_support_requested": "lots"}, "min_support_requested"),
        ({"min_support_requested": 0.025}, "wrong type"),
        ({"min_count": "3"}, "wrong type"),
        ({"min_support_requested": "auto", "min_count": None}, "min_count is missing"),
    ],
)
def test_a_bad_support_record_is_refused(change: dict[str, object], message: str) -> None:
    document = cbor2.loads(encode_rules(make_ruleset()))
    parameters = document["header"]["parameters"]
    for key, value in change.items():
        if value is None:
            del parameters[key]
        else:
            parameters[key] = value
    with pytest.raises(RulesFileError, match=message):
        decode_rules(cbor2.dumps(document))


# -- bounded reads: what anyone able to write DATA_DIR may put under the rules file's name ----
# Each read runs in a child process under a memory cap and a timeout: a reader that blocks or
# reads without end fails the test instead of hanging it or filling the machine's memory.


def read_in_child(path: Path) -> tuple[str, int]:
    """Read ``path`` with read_rules in a child: (its one-line outcome, bytes it read)."""
    code = f"""
import re
from mining.rulesfile import read_rules, RulesFileError
def bytes_read():
    return int(re.search(r"rchar: (\\d+)", open("/proc/self/io").read()).group(1))
before = bytes_read()
try:
    read_rules({str(path)!r})
    outcome = "read"
except RulesFileError as exc:
    outcome = str(exc)
print(outcome, "|", bytes_read() - before)
"""
    result = run_python(code, timeout=30, address_space=2 * 1024**3)
    assert result.returncode == 0, result.stderr
    outcome, _, read = result.stdout.strip().rpartition(" | ")
    return outcome, int(read)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "rules.cbor")
    outcome, _ = read_in_child(tmp_path / "rules.cbor")
    assert outcome.endswith("rules.cbor: a FIFO, not a regular file")


def test_a_link_to_an_endless_device_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "rules.cbor").symlink_to("/dev/zero")
    outcome, read = read_in_child(tmp_path / "rules.cbor")
    assert outcome.endswith("rules.cbor: a character device, not a regular file")
    assert read < 64 * 1024


def test_a_file_larger_than_its_header_allows_is_refused_after_reading_the_header(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.cbor"
    path.write_bytes(encode_rules(make_ruleset()))
    _, most = rulesfile.size_bounds(make_ruleset().header)
    with open(path, "r+b") as f:
        f.truncate(512 * 1024**2)  # sparse: valid header, then half a GiB of zeros
    outcome, read = read_in_child(path)
    assert f"more than the {most} its header (4 songs, 4 rules) allows" in outcome
    assert read <= rulesfile.HEADER_PREFIX_BYTES + 4096


def test_a_file_over_the_absolute_bound_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "rules.cbor"
    with open(path, "wb") as f:
        f.truncate(rulesfile.MAX_RULES_FILE_BYTES + 1)
    outcome, read = read_in_child(path)
    assert f"larger than the {rulesfile.MAX_RULES_FILE_BYTES} accepted" in outcome
    assert read < 4096


def test_a_file_shorter_than_its_header_needs_is_refused_after_reading_the_header(
    tmp_path: Path,
) -> None:
    ruleset = synthetic_ruleset(20_000)
    data = encode_rules(ruleset)
    (tmp_path / "rules.cbor").write_bytes(data[: len(data) // 2])
    with pytest.raises(RulesFileError, match=r"truncated: \d+ bytes, fewer than the \d+"):
        read_rules(tmp_path / "rules.cbor")


def test_the_header_alone_is_read_from_the_first_bytes(tmp_path: Path) -> None:
    ruleset = synthetic_ruleset(20_000)
    write_rules(tmp_path / "rules.cbor", ruleset)
    assert rulesfile.read_rules_header(tmp_path / "rules.cbor") == ruleset.header
    # What the size bounds promise holds for real files of every size here.
    for rules in (make_ruleset(), ruleset, make_ruleset(rules=[])):
        least, most = rulesfile.size_bounds(rules.header)
        assert least <= len(encode_rules(rules)) <= most


def test_the_writer_refuses_what_a_reader_would(tmp_path: Path) -> None:
    # Names of 40,000 bytes each: far over the 1 KiB average a reader allows for.
    huge_names = tuple(f"{i} " + "x" * 40_000 for i in range(4))
    with pytest.raises(RulesFileError, match=r"its header .* allows"):
        write_rules(tmp_path / "rules.cbor", make_ruleset(songs=huge_names))
    assert list(tmp_path.iterdir()) == []


# -- decoding in steps --------------------------------------------------------------------------

CBOR_ITEMS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5), inner, max_size=4)
        | st.builds(cbor2.CBORTag, st.just(TAG_UINT32_LE), inner)
    ),
    max_leaves=20,
)


@given(document=CBOR_ITEMS)
def test_decoding_a_document_in_steps_gives_what_one_call_gives(document: object) -> None:
    data = cbor2.dumps(document)
    assert rulesread._loads_in_steps(data) == cbor2.loads(data)


def test_a_rules_file_decoded_in_steps_is_the_same_and_any_cut_of_it_is_refused() -> None:
    data = encode_rules(synthetic_ruleset(40, n_songs=30, seed=3))
    assert rulesread._loads_in_steps(data) == cbor2.loads(data)
    for cut in range(0, len(data), max(1, len(data) // 97)):
        with pytest.raises(cbor2.CBORDecodeError):
            rulesread._loads_in_steps(data[:cut])
