"""The compiled small-query path: built where CI runs, the Python path's answers, safe inputs.

Its answers on random rule sets are held to the brute force with the Python path's in
test_recommender.py (every test there runs every build); these are the cases those small rule
sets do not reach (answers longer than the on-stack buffers) and the extension's own checks.
"""

from __future__ import annotations

import gc
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mining.rulesfile import RuleSet
from recommender import compiled as compiled_path
from recommender import engine as recommender
from recommender.engine import Recommender
from tests.helpers.rules import build_ruleset

REPO = Path(__file__).resolve().parents[2]

SmallQueryIndex = compiled_path.SmallQueryIndex
needs_compiled = pytest.mark.skipif(
    SmallQueryIndex is None, reason="recommender._smallquery was not built (no C compiler)"
)


def test_the_compiled_path_is_built_where_ci_runs() -> None:
    if SmallQueryIndex is None and os.environ.get("CI") == "true":
        pytest.fail(
            "recommender._smallquery was not built: is gcc installed? (make test installs it)"
        )
    if SmallQueryIndex is None:
        pytest.skip("recommender._smallquery was not built (no C compiler)")


def crowded_ruleset(n_songs: int = 400) -> tuple[list[str], RuleSet]:
    """Every subset of songs 0-4 is an antecedent of 100 rules (one per consequent 8-107):
    a 5-song query pools 3,100 keys, past the compiled path's on-stack buffer of 1,024."""
    names = [f"song {i:03}" for i in range(n_songs)]
    counts = [1000 - i for i in range(n_songs)]
    rules = [
        (list(antecedent), consequent, 10 + (consequent * 7 + len(antecedent)) % 50, 60)
        for size in range(1, 6)
        for antecedent in itertools.combinations(range(5), size)
        for consequent in range(8, 108)
    ]
    return names, build_ruleset(names, counts, rules)


def wide_ruleset(n_songs: int = 2000) -> tuple[list[str], RuleSet]:
    """Songs 0, 1 and {0, 1} each lead to every other song: a query of both fires 5,994 rules
    for 1,998 candidates, past the sum ranking's on-stack table of 512."""
    names = [f"song {i:04}" for i in range(n_songs)]
    counts = [5000 - i for i in range(n_songs)]
    rules = [
        (antecedent, consequent, 1 + (consequent * 13 + len(antecedent) * 7) % 40, 40)
        for antecedent in ([0], [1], [0, 1])
        for consequent in range(2, n_songs)
    ]
    return names, build_ruleset(names, counts, rules)


# The compiled sum ranking's tallies: an array over song ids (stopping early from the default
# depth, and from the first rule, completing the contenders by testing each rule or from every
# run's bitmap), and (lowered to 0 songs) the hash table it takes for larger song tables:
# (dense tally limit, early-stop depth, bitmap share).
DENSE_LIMITS = [
    (compiled_path.DENSE_TALLY_SONGS, compiled_path.SUM_DEPTH, compiled_path.BITMAP_SHARE),
    (compiled_path.DENSE_TALLY_SONGS, 1, 0),
    (compiled_path.DENSE_TALLY_SONGS, 1, 1 << 40),
    (0, 0, 0),
]


@pytest.fixture(
    params=DENSE_LIMITS, ids=["array", "array-stop-at-1", "array-stop-at-1-bitmaps", "hash"]
)
def each_tally(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recommenders built in the test use one of the compiled sum ranking's tallies."""
    dense, depth, share = request.param
    monkeypatch.setattr(compiled_path, "DENSE_TALLY_SONGS", dense)
    monkeypatch.setattr(compiled_path, "SUM_DEPTH", depth)
    monkeypatch.setattr(compiled_path, "BITMAP_SHARE", share)


@needs_compiled
@pytest.mark.usefixtures("each_tally")
@pytest.mark.parametrize("ranking", recommender.RANKINGS)
@pytest.mark.parametrize("limit", [1, 10, 300, 2000])
def test_answers_from_thousands_of_candidates_equal_the_python_path(
    limit: int, ranking: str
) -> None:
    names, ruleset = wide_ruleset()
    compiled = Recommender.from_ruleset(ruleset, compiled=True, ranking=ranking)
    python = Recommender.from_ruleset(ruleset, compiled=False, ranking=ranking)
    for query in (names[:2], names[1:5], [names[0]]):
        expected = python.explain(query, limit)
        assert compiled.explain(query, limit) == expected
        # Every song but 0 and 1 is a consequent.
        assert expected.from_rules == min(limit, len(set(names[2:]) - set(query)))


@needs_compiled
@pytest.mark.usefixtures("each_tally")
@pytest.mark.parametrize("ranking", recommender.RANKINGS)
@pytest.mark.parametrize("limit", [1, 10, 100, 300, 400, 1000])
def test_long_answers_equal_the_python_path(limit: int, ranking: str) -> None:
    # limit 300+: the "listed songs" set outgrows its on-stack slots too, and the sum
    # ranking's heap its on-stack entries.
    names, ruleset = crowded_ruleset()
    compiled = Recommender.from_ruleset(ruleset, compiled=True, ranking=ranking)
    python = Recommender.from_ruleset(ruleset, compiled=False, ranking=ranking)
    for query in (names[:5], names[:8], [names[4], names[2]], [names[200]], names[3:11]):
        expected = python.explain(query, limit)
        assert compiled.explain(query, limit) == expected
        assert len(expected.songs) == min(limit, len(names) - len(query))
        # Every query but [song 200] fires rules for every consequent 8-107 outside it.
        candidates = 0 if query == [names[200]] else len(set(names[8:108]) - set(query))
        assert expected.from_rules == min(limit, candidates)


@needs_compiled
def test_the_index_keeps_its_arrays_alive() -> None:
    names, ruleset = crowded_ruleset()
    r = Recommender.from_ruleset(ruleset, compiled=True)
    expected = r.recommend(names[:5], 20)
    summed = r.explain(names[:5], 20, ranking="sum")
    index = r._small
    del r, ruleset
    gc.collect()
    assert index is not None
    songs, from_rules = index.answer(list(range(5)), 20, False)
    assert ([names[song] for song in songs], from_rules) == (expected, 20)
    songs, from_rules = index.answer(list(range(5)), 20, True)
    assert ([names[song] for song in songs], from_rules) == (summed.songs, summed.from_rules)


def arrays(**changes: object) -> dict[str, Any]:
    """Valid arguments of a two-song, one-rule index ({0} -> 1), with ``changes``."""
    valid: dict[str, Any] = {
        "codes": np.array([11, 0], dtype=np.uint64),
        "group_hashes": np.array([11], dtype=np.uint64),
        "group_starts": np.array([0, 1], dtype=np.int64),
        "group_rows": np.array([0], dtype=np.uint8),
        "row_width": 1,
        "keys": np.array([5], dtype=np.uint64),  # 5 % 2 = 1: tie_songs[1] is song 1
        "consequents": np.array([1], dtype=np.uint8),
        "weights": np.array([2**30], dtype=np.uint32),
        "tie_songs": np.array([0, 1], dtype=np.int64),
        "popular": np.array([1, 0], dtype=np.int64),
    }
    valid.update(changes)
    return valid


# Arguments that must be refused (changes to arrays()), and a piece of the message.
BAD_ARRAYS: list[tuple[dict[str, object], str]] = [
    ({"codes": np.array([11, 0], dtype=np.uint32)}, "codes must be"),
    ({"keys": np.zeros((1, 1), dtype=np.uint64)}, "keys must be"),
    ({"group_starts": np.array([0, 1, 1], dtype=np.int64)}, "disagree"),
    ({"popular": np.array([1], dtype=np.int64)}, "disagree"),
    ({"row_width": 0}, "disagree"),
    ({"group_starts": np.array([0, 2], dtype=np.int64)}, "partition"),
    ({"group_rows": np.array([3], dtype=np.uint8)}, "does not exist"),
    ({"group_rows": np.array([0], dtype=np.float32)}, "unsigned song ids"),
    ({"tie_songs": np.array([0, 2], dtype=np.int64)}, "does not exist"),
    ({"popular": np.array([1, -1], dtype=np.int64)}, "does not exist"),
    ({"consequents": np.array([2], dtype=np.uint8)}, "consequents names a song"),
    ({"consequents": np.array([1, 0], dtype=np.uint8)}, "disagree"),
    ({"consequents": np.array([1], dtype=np.int8)}, "consequents must be"),
    ({"weights": np.array([1], dtype=np.uint64)}, "weights must be"),
    ({"weights": np.array([], dtype=np.uint32)}, "disagree"),
    ({"keys": np.array([2**64 - 1], dtype=np.uint64)}, "marks a query song"),
    (
        {
            "group_hashes": np.array([11, 11], dtype=np.uint64),
            "group_starts": np.array([0, 1, 1], dtype=np.int64),
            "group_rows": np.array([0, 0], dtype=np.uint8),
        },
        "share a hash",
    ),
]
# Queries that must raise: query, limit, the exception, a piece of its message.
BAD_QUERIES: list[tuple[object, float, type[Exception], str]] = [
    ([0], 1.5, TypeError, "integer"),
    ([0], 0, ValueError, "limit must be at least 1"),
    ([2], 1, ValueError, "no song has id 2"),
    ([-1], 1, ValueError, "no song has id -1"),
    ([0, 0], 1, ValueError, "twice"),
    (list(range(17)), 1, ValueError, "at most 16 songs"),
    (["0"], 1, TypeError, "integer"),
    (5, 1, TypeError, "sequence of song ids"),
]


@needs_compiled
@pytest.mark.parametrize("summed", [False, True])
def test_a_valid_index_answers(summed: bool) -> None:
    index = SmallQueryIndex(**arrays())
    assert index.answer([0], 5, summed) == ([1], 1)
    assert index.answer([1], 5, summed) == ([0], 0)
    assert index.answer([], 5, summed) == ([1, 0], 0)
    assert index.table_bytes > 0


@needs_compiled
@pytest.mark.parametrize("dense", [-1, compiled_path.DENSE_TALLY_SONGS + 1])
def test_a_dense_tally_limit_out_of_range_is_refused(dense: int) -> None:
    with pytest.raises(ValueError, match="dense_songs must be from 0 to 262144"):
        SmallQueryIndex(**arrays(), dense_songs=dense)


@needs_compiled
def test_a_negative_early_stop_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="sum_depth must be at least 0, not -1"):
        SmallQueryIndex(**arrays(), sum_depth=-1)


@needs_compiled
def test_a_negative_bitmap_share_is_refused() -> None:
    with pytest.raises(ValueError, match="bitmap_share must be at least 0, not -1"):
        SmallQueryIndex(**arrays(), bitmap_share=-1)


@needs_compiled
def test_bitmaps_are_counted_and_a_run_naming_a_consequent_twice_is_refused() -> None:
    plain = SmallQueryIndex(**arrays(), bitmap_share=0).table_bytes
    # One run, one rule, two songs: a bitmap of one word, its rank, the rule's key and weight,
    # and the antecedent's and the bitmap's indexes.
    with_bitmap = plain + 8 + 8 + 4 + 12 + 8
    assert SmallQueryIndex(**arrays(), bitmap_share=2).table_bytes == with_bitmap
    # A share past any run length times itself: every run, no overflow.
    assert SmallQueryIndex(**arrays(), bitmap_share=2**62).table_bytes == with_bitmap
    twice = arrays(
        keys=np.array([7, 5], dtype=np.uint64),
        consequents=np.array([1, 1], dtype=np.uint8),
        weights=np.array([2**30, 2**29], dtype=np.uint32),
        group_starts=np.array([0, 2], dtype=np.int64),
    )
    with pytest.raises(ValueError, match="names a consequent twice"):
        SmallQueryIndex(**twice, bitmap_share=2)
    # Without a bitmap (or without the early stop, which alone uses them) it is not looked for.
    SmallQueryIndex(**twice, bitmap_share=0)
    SmallQueryIndex(**twice, bitmap_share=2, sum_depth=0)


@needs_compiled
@pytest.mark.parametrize("depth", [1, 2, 32])
def test_an_early_stop_gives_the_full_reading_s_answers_on_long_runs(depth: int) -> None:
    # Runs of 2,000 rules whose confidences fall slowly and tie often, queried by every
    # pair and single: what stopping early is for, held to reading every rule, with the
    # contenders completed rule by rule, from the bitmaps of the runs of 2,000 songs / 1 (the
    # three 1,998-rule runs have one; their 2-song intersection too), and from every run's.
    names, ruleset = wide_ruleset()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled_path, "SUM_DEPTH", 0)
        full = Recommender.from_ruleset(ruleset, compiled=True, ranking="sum")
    early = []
    for share in (0, 1, 1 << 40):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(compiled_path, "SUM_DEPTH", depth)
            patch.setattr(compiled_path, "BITMAP_SHARE", share)
            early.append(Recommender.from_ruleset(ruleset, compiled=True, ranking="sum"))
    for query in ([names[0]], [names[1]], names[:2], [names[0], names[5]]):
        for limit in (1, 3, 10, 100):
            expected = full.explain(query, limit)
            assert [r.explain(query, limit) for r in early] == [expected] * 3, (query, limit)


@needs_compiled
def test_the_dense_tally_starts_afresh_for_every_query() -> None:
    # The scratch is reused without clearing: a query must not see the last one's sums.
    _, ruleset = wide_ruleset(n_songs=50)
    dense = Recommender.from_ruleset(ruleset, compiled=True, ranking="sum")
    python = Recommender.from_ruleset(ruleset, compiled=False, ranking="sum")
    queries = [["song 0000"], ["song 0001"], ["song 0000", "song 0001"], ["song 0007"]] * 3
    assert [dense.explain(q, 30) for q in queries] == [python.explain(q, 30) for q in queries]


@needs_compiled
@pytest.mark.parametrize(("changes", "message"), BAD_ARRAYS)
def test_inconsistent_arrays_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmallQueryIndex(**arrays(**changes))


@needs_compiled
@pytest.mark.parametrize(("query", "limit", "error", "message"), BAD_QUERIES)
def test_bad_queries_raise_instead_of_reading_out_of_bounds(
    query: object, limit: float, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SmallQueryIndex(**arrays()).answer(query, limit, True)  # type: ignore[arg-type]


@needs_compiled
def test_an_index_cannot_be_reinitialised_or_used_uninitialised() -> None:
    index = SmallQueryIndex(**arrays())
    with pytest.raises(TypeError, match="immutable"):
        index.__init__(**arrays())  # type: ignore[misc]
    assert index.answer([0], 1, False) == ([1], 1)
    blank = SmallQueryIndex.__new__(SmallQueryIndex)
    with pytest.raises(RuntimeError, match="not initialised"):
        blank.answer([0], 1, False)
    with pytest.raises(TypeError, match="whether to sum"):
        index.answer([0], 1)  # type: ignore[call-arg]


def as_json(answer: recommender.Recommendation) -> tuple[bytes, int, list[str]]:
    """``explain_json``'s form of ``explain``'s answer."""
    return json.dumps(answer.songs).encode(), answer.from_rules, answer.unknown


@needs_compiled
@pytest.mark.usefixtures("each_tally")
@pytest.mark.parametrize("summed", [False, True])
@pytest.mark.parametrize("limit", [1, 10, 200, 1000])
def test_answer_json_is_the_answer_of_the_names_ids_as_json(limit: int, summed: bool) -> None:
    # limit 200 and 1000: the song ids outgrow the answer's on-stack room (128).
    names, ruleset = crowded_ruleset()
    r = Recommender.from_ruleset(ruleset, compiled=True)
    index = r._compiled
    assert index is not None
    ids = {name: song for song, name in enumerate(r.song_names)}
    for query in (names[:5], names[:8], [names[4], names[2]], [names[200]], names[3:11], []):
        songs, from_rules = index.answer([ids[name] for name in query], limit, summed)
        expected = json.dumps([r.song_names[song] for song in songs]).encode()
        assert index.answer_json(query, limit, summed) == (expected, from_rules)
        # A name given twice is one song, as in the Python path.
        assert index.answer_json(query + query[:1], limit, summed) == (expected, from_rules)


@needs_compiled
def test_answer_json_leaves_what_is_not_an_exact_name_to_the_python_path() -> None:
    names, ruleset = crowded_ruleset()
    r = Recommender.from_ruleset(ruleset, compiled=True)
    index = r._compiled
    assert index is not None
    for query in (
        [names[0], "no such song"],
        [names[0].upper()],  # its normalised form is a song's: the Python path matches it
        names[:17],  # more distinct songs than the subset enumeration takes
    ):
        assert index.answer_json(query, 10, True) is None
    # Through the recommender those answers are the Python path's, unknown songs included.
    python = Recommender.from_ruleset(ruleset, compiled=False)
    for query in ([names[0], "no such song"], [names[0].upper(), names[3]], names[:9]):
        assert r.explain_json(query, 10) == as_json(python.explain(query, 10))


# song_ids and json_names of arrays()'s two songs.
NAMES: dict[str, object] = {"song_ids": {"a": 0, "b": 1}, "json_names": (b'"a"', b'"b"')}
# Names that must be refused (changes to arrays()), the exception and a piece of the message.
BAD_NAMES: list[tuple[dict[str, object], type[Exception], str]] = [
    ({"song_ids": {"a": 0}}, TypeError, "go together"),
    ({"json_names": (b'"a"', b'"b"')}, TypeError, "go together"),
    ({**NAMES, "json_names": (b'"a"',)}, ValueError, "one name per song"),
    ({**NAMES, "json_names": (b'"a"', '"b"')}, TypeError, "must hold bytes"),
    ({**NAMES, "json_names": [b'"a"', b'"b"']}, TypeError, "tuple"),
    ({**NAMES, "song_ids": [("a", 0)]}, TypeError, "dict"),
]
# Name queries that must raise: names, limit, the exception, a piece of its message.
BAD_NAME_QUERIES: list[tuple[object, float, type[Exception], str]] = [
    (["a"], 0, ValueError, "limit must be at least 1"),
    (["a"], 1.5, TypeError, "integer"),
    ([["a"]], 1, TypeError, "unhashable"),
    (5, 1, TypeError, "sequence of song names"),
]


@needs_compiled
@pytest.mark.parametrize("summed", [False, True])
def test_answer_json_of_a_valid_index(summed: bool) -> None:
    index = SmallQueryIndex(**arrays(**NAMES))
    assert index.answer_json(["a"], 5, summed) == (b'["b"]', 1)
    assert index.answer_json(["b", "b"], 5, summed) == (b'["a"]', 0)
    assert index.answer_json([], 1, summed) == (b'["b"]', 0)
    assert index.answer_json(["c"], 5, summed) is None


@needs_compiled
@pytest.mark.parametrize(("changes", "error", "message"), BAD_NAMES)
def test_inconsistent_names_are_refused(
    changes: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SmallQueryIndex(**arrays(**changes))


@needs_compiled
@pytest.mark.parametrize(("names", "limit", "error", "message"), BAD_NAME_QUERIES)
def test_bad_name_queries_raise(
    names: object, limit: float, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SmallQueryIndex(**arrays(**NAMES)).answer_json(names, limit, True)  # type: ignore[arg-type]


@needs_compiled
def test_answer_json_needs_the_names_and_checks_their_ids() -> None:
    for unnamed in (arrays(), arrays(song_ids=None, json_names=None)):
        with pytest.raises(RuntimeError, match="without song names"):
            SmallQueryIndex(**unnamed).answer_json(["a"], 1, True)
    stray = SmallQueryIndex(**arrays(song_ids={"a": 2}, json_names=(b'"a"', b'"b"')))
    with pytest.raises(ValueError, match="id 2, which no song has"):
        stray.answer_json(["a"], 1, True)
    blank = SmallQueryIndex.__new__(SmallQueryIndex)
    with pytest.raises(RuntimeError, match="not initialised"):
        blank.answer_json(["a"], 1, False)


def test_compiled_true_without_the_extension_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _, ruleset = crowded_ruleset(n_songs=120)
    monkeypatch.setattr(compiled_path, "SmallQueryIndex", None)
    with pytest.raises(ImportError, match="not built"):
        Recommender.from_ruleset(ruleset, compiled=True)
    assert not Recommender.from_ruleset(ruleset).compiled


def soak(library: str, rounds: int) -> None:
    """Answer random queries on random rule sets with the extension at ``library`` and with
    the Python path, and require the same answers (run by the sanitizer test below)."""
    spec = importlib.util.spec_from_file_location("recommender._smallquery", library)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compiled_path.SmallQueryIndex = module.SmallQueryIndex  # type: ignore[misc]
    rng = np.random.default_rng(11)
    for round_ in range(rounds):
        # From under 256 songs (one-byte ids in the rows) to over (two-byte ids).
        n_songs = int(rng.choice([3, 40, 250, 300]))
        names = [f"s{i}" for i in range(n_songs)]
        rules = []
        for _ in range(int(rng.integers(0, 400))):
            size = int(rng.integers(1, min(6, n_songs - 1) + 1)) if n_songs > 1 else 0
            if size == 0:
                break
            members = rng.choice(n_songs, size + 1, replace=False).tolist()
            count = int(rng.integers(1, 50))
            rules.append(
                (sorted(members[:-1]), members[-1], count, count + int(rng.integers(0, 50)))
            )
        ruleset = build_ruleset(names, rng.integers(1, 100, n_songs), rules)
        with pytest.MonkeyPatch.context() as patch:
            # Every other round: stopping early from the first rule, every run with a bitmap.
            if round_ % 2:
                patch.setattr(compiled_path, "SUM_DEPTH", 1)
                patch.setattr(compiled_path, "BITMAP_SHARE", 1 << 40)
            compiled = Recommender.from_ruleset(ruleset, compiled=True)
        python = Recommender.from_ruleset(ruleset, compiled=False)
        for _ in range(40):
            size = int(rng.integers(0, min(n_songs, 12) + 1))
            query = [names[i] for i in rng.choice(n_songs, size, replace=False)]
            limit = int(rng.choice([1, 3, 10, 100, 400]))
            for switch, ranking in itertools.product((8, 12), recommender.RANKINGS):
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(recommender, "FEW_QUERY_SONGS", switch)
                    expected = python.explain(query, limit, ranking=ranking)
                    got = compiled.explain(query, limit, ranking=ranking)
                    assert got == expected, (round_, query, limit, ranking)
                    assert as_json(expected) == compiled.explain_json(
                        query, limit, ranking=ranking
                    ), (round_, query, limit, ranking)
    # Answers past the on-stack buffers: pools, "listed" sets, sum tables and heaps on the heap.
    for names, ruleset in (crowded_ruleset(), wide_ruleset()):
        compiled = Recommender.from_ruleset(ruleset, compiled=True)
        python = Recommender.from_ruleset(ruleset, compiled=False)
        for limit, ranking in itertools.product((10, 300, 2000), recommender.RANKINGS):
            for query in (names[:8], names[3:11], names[:2]):
                expected = python.explain(query, limit, ranking=ranking)
                assert compiled.explain(query, limit, ranking=ranking) == expected
                assert compiled.explain_json(query, limit, ranking=ranking) == as_json(expected)
    for changes, _ in BAD_ARRAYS:
        with pytest.raises(ValueError):
            module.SmallQueryIndex(**arrays(**changes))
    for bad_query, bad_limit, error, _ in BAD_QUERIES:
        with pytest.raises(error):
            module.SmallQueryIndex(**arrays()).answer(bad_query, bad_limit, True)
    for changes, error, _ in BAD_NAMES:
        with pytest.raises(error):
            module.SmallQueryIndex(**arrays(**changes))
    named = module.SmallQueryIndex(**arrays(**NAMES))
    for bad_names, bad_limit, error, _ in BAD_NAME_QUERIES:
        with pytest.raises(error):
            named.answer_json(bad_names, bad_limit, True)


def sanitizer_runtime(name: str) -> str | None:
    """The path of gcc's ``name`` runtime library, or None without gcc or that library."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    found = subprocess.run(
        [gcc, f"-print-file-name={name}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.mark.slow
def test_the_compiled_path_is_memory_safe_under_asan_and_ubsan(tmp_path: Path) -> None:
    # The extension built with AddressSanitizer and UndefinedBehaviorSanitizer, in a
    # subprocess with them preloaded and Python's allocator off (so PyMem blocks are checked
    # too): any out-of-bounds access, use after free or undefined behaviour aborts it.
    runtimes = [sanitizer_runtime("libasan.so"), sanitizer_runtime("libubsan.so")]
    if None in runtimes:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc with libasan and libubsan is needed (make test installs gcc)")
        pytest.skip("gcc with libasan and libubsan is not installed")
    library = tmp_path / "_smallquery_sanitized.so"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [
            "gcc",
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
            "-fno-omit-frame-pointer",
            "-shared",
            "-fPIC",
            f"-I{include}",
            str(REPO / "recommender" / "_smallquery.c"),
            "-o",
            str(library),
        ],
        check=True,
        timeout=120,
    )
    env = dict(
        os.environ,
        LD_PRELOAD=" ".join(str(runtime) for runtime in runtimes),
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
        UBSAN_OPTIONS="print_stacktrace=1",
        PYTHONMALLOC="malloc",
        PYTHONPATH=str(REPO),
    )
    script = f"from tests.recommender.test_smallquery import soak; soak({str(library)!r}, 100)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
