"""Benchmark (e): the recommendation engine against the original algorithm, side by side.

Builds ``recommender.engine.Recommender`` from a rules file (by default mined by the real
miner from ``tests/data/synth_dense.csv.xz`` into ``build/benchmarks/``; ``--rules`` times any
rules file, with queries drawn from ``--dataset``, plain CSV, gzip or xz), then times queries
of 1, 5, 20, 100 and 1,000 songs drawn from the dataset's playlists, plus the worst case at the
1,000-song cap (the songs in the most rules), under each ranking (``best`` and ``sum`` side by
side, or those given to ``--rankings``). Two baselines run in the same process on the same
queries, ranking the same way, and must return the same lists:

- *original*: enumerate every subset of Q up to the longest antecedent and look each up in a
  dict antecedent → rules (what the Rust server did); run only where it finishes, otherwise
  "skipped" with the time it would take, from the measured cost per subset;
- *rarest scan*: each rule listed under its rarest antecedent song, ``A ⊆ Q`` tested with
  Python sets (the pure-Python form of the index's design, docs/recommender-design.md).

It also prints the build time, the longest stall a concurrent Python thread sees during the
build (the GIL: the build runs in an actor thread while the event loop serves) next to the
same thread's stalls while idle, and the index memory (tracemalloc) against the baselines'.

    .venv/bin/python -m benchmarks.recommend [--rules PATH --dataset CSV] [--queries 400]
        [--rankings best sum]

Garbage collection is paused inside timed loops (a collection is not the engine's cost).
Ratios and targets use the CPU time of the querying thread, so that other processes on a
shared machine do not skew them; wall-clock figures are printed next to them. Exit status 1
when a target of issue 3 (e) is missed under any ranking: 5-song p50 ≤ 100 µs, every query up
to the cap ≤ 20 ms, or when a baseline's answers differ from the engine's.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import math
import random
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks._server import DATASET, dataset_playlists, mined_model
from http_api.settings import Settings
from mining.rulesfile import RULES_FILENAME, RuleSet, read_rules
from recommender import engine as recommender_module
from recommender.compiled import SmallQueryIndex
from recommender.engine import RANKINGS, Recommender
from recommender.keys import WEIGHT_BITS

SIZES = (1, 5, 20, 100, 1000)
# Issue 3 (e).
TARGET_P50_5_SONGS_US = 100.0
TARGET_MAX_MS = 20.0
# Every baseline loop stops at its query count or after this long, whichever comes first.
BASELINE_BUDGET_SECONDS = 8.0
ORIGINAL_MAX_SUBSETS = 200_000

Recommend = Callable[[Sequence[str], int], list[str]]


def draw_queries(playlists: list[list[str]], size: int, count: int, seed: int) -> list[list[str]]:
    """``count`` queries of ``size`` songs from one playlist, or from the union of random
    playlists when no playlist is that long (1,000 songs)."""
    rng = random.Random(seed * 100_003 + size)
    long_enough = [p for p in playlists if len(p) >= size]
    queries = []
    for _ in range(count):
        if long_enough:
            queries.append(rng.sample(rng.choice(long_enough), size))
            continue
        pool: dict[str, None] = {}
        while len(pool) < size:
            pool.update(dict.fromkeys(rng.choice(playlists)))
        queries.append(rng.sample(list(pool), size))
    return queries


def busiest_songs(ruleset: RuleSet, count: int) -> list[str]:
    """The ``count`` songs named by the most rules: the query that reads the most of the index."""
    n = ruleset.header.song_count
    named = np.bincount(ruleset.antecedent_songs, minlength=n)
    named += np.bincount(ruleset.consequents, minlength=n)
    return [ruleset.song_names[i] for i in np.argsort(-named, kind="stable")[:count].tolist()]


@dataclass(frozen=True)
class Timing:
    """Per-query wall and thread-CPU times (seconds) of one engine on one query set."""

    wall: list[float]
    cpu: list[float]
    answers: list[list[str]]

    @property
    def cpu_p50(self) -> float:
        """Median CPU time of the querying thread."""
        return statistics.median(self.cpu)

    def describe(self) -> str:
        """CPU p50 / max, then wall-clock p50 / p99 / max."""
        w = sorted(self.wall)
        p99 = w[min(len(w) - 1, math.ceil(0.99 * len(w)) - 1)]
        return (
            f"cpu p50 {fmt(self.cpu_p50)} max {fmt(max(self.cpu))} | wall p50 "
            f"{fmt(statistics.median(w))} p99 {fmt(p99)} max {fmt(w[-1])} (n={len(w)})"
        )


MILLISECOND = 1e-3
HOUR = 3600.0
# From this speed ratio on, decimals say nothing.
RATIO_WITHOUT_DECIMALS = 10


def fmt(seconds: float) -> str:
    """A duration with a unit that keeps three significant figures readable."""
    if seconds < MILLISECOND:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    if seconds < HOUR:
        return f"{seconds:.1f} s"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / (365 * 86400):,.0f} years"


def times(ratio: float) -> str:
    """A speed ratio, with decimals only where they matter."""
    return f"{ratio:.2f}×" if ratio < RATIO_WITHOUT_DECIMALS else f"{ratio:,.0f}×"


def run(recommend: Recommend, queries: list[list[str]], budget: float | None = None) -> Timing:
    """Time each query (GC paused), stopping early once ``budget`` seconds are spent."""
    wall, cpu, answers = [], [], []
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        for query in queries:
            w0, c0 = time.perf_counter(), time.thread_time()
            answer = recommend(query, 10)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            answers.append(answer)
            if budget is not None and time.perf_counter() - started > budget:
                break
    finally:
        gc.enable()
    return Timing(wall, cpu, answers)


# A rule as the baselines hold it: consequent, confidence, lift, and the sum ranking's weight
# (the confidence as the integer round(c · 2^WEIGHT_BITS), halves up, as the engine defines it).
Scored = tuple[int, float, float, int]


class Baselines:
    """The two reference algorithms, over Python objects built from the same rule set."""

    def __init__(self, ruleset: RuleSet, recommender: Recommender, ranking: str = "best") -> None:
        names, counts = ruleset.song_names, [int(c) for c in ruleset.song_counts]
        n = ruleset.header.transactions
        self.match = recommender.match
        self.names = names
        self.summed = ranking == "sum"
        self.popular = sorted(range(len(names)), key=lambda s: (-counts[s], names[s]))
        self.by_antecedent: dict[tuple[int, ...], list[Scored]] = {}
        self.by_rarest: dict[int, list[tuple[frozenset[int], Scored]]] = {}
        self.width = 0
        # The original's cost per subset lookup, from its last timed run: what it would take
        # where it is not run.
        self.per_subset: float | None = None
        for i in range(ruleset.header.rule_count):
            antecedent = ruleset.antecedent(i)
            consequent = int(ruleset.consequents[i])
            rule_count, antecedent_count = (
                int(ruleset.rule_counts[i]),
                int(ruleset.antecedent_counts[i]),
            )
            confidence = rule_count / antecedent_count
            lift = confidence * n / counts[consequent]
            weight = ((rule_count << WEIGHT_BITS) + antecedent_count // 2) // antecedent_count
            scored = (consequent, confidence, lift, weight)
            self.by_antecedent.setdefault(antecedent, []).append(scored)
            rarest = min(antecedent, key=lambda s: (counts[s], s))
            self.by_rarest.setdefault(rarest, []).append((frozenset(antecedent), scored))
            self.width = max(self.width, len(antecedent))

    def _rank(self, query: set[int], fired: list[Scored], limit: int) -> list[str]:
        names = self.names
        best: dict[int, tuple[float, float]] = {}
        sums: dict[int, int] = {}
        for consequent, confidence, lift, weight in fired:
            best[consequent] = max(best.get(consequent, (0.0, 0.0)), (confidence, lift))
            sums[consequent] = sums.get(consequent, 0) + weight
        if not self.summed:
            sums = dict.fromkeys(sums, 0)
        ranked = sorted(best, key=lambda c: (-sums[c], -best[c][0], -best[c][1], names[c]))
        ranked = ranked[:limit]
        listed = set(ranked)
        for song in self.popular:
            if len(ranked) >= limit:
                break
            if song not in query and song not in listed:
                ranked.append(song)
        return [names[s] for s in ranked]

    def original(self, songs: Sequence[str], limit: int) -> list[str]:
        """Every subset of Q up to the longest antecedent, looked up in a dict."""
        query = sorted(self.match(songs))
        chosen = set(query)
        fired = [
            scored
            for size in range(1, min(self.width, len(query)) + 1)
            for subset in itertools.combinations(query, size)
            for scored in self.by_antecedent.get(subset, ())
            if scored[0] not in chosen
        ]
        return self._rank(chosen, fired, limit)

    def rarest_scan(self, songs: Sequence[str], limit: int) -> list[str]:
        """The rules listed under each query song, ``A ⊆ Q`` tested with sets."""
        chosen = set(self.match(songs))
        fired = [
            scored
            for song in chosen
            for antecedent, scored in self.by_rarest.get(song, ())
            if scored[0] not in chosen and antecedent <= chosen
        ]
        return self._rank(chosen, fired, limit)

    def subsets(self, query_size: int) -> int:
        """How many dict lookups the original makes for a query of this many known songs."""
        return sum(math.comb(query_size, k) for k in range(1, min(self.width, query_size) + 1))


def stalls_during(work: Callable[[], object]) -> tuple[float, float]:
    """Longest gap a thread sleeping 1 ms sees while ``work`` runs, and while nothing runs."""

    def watch(stop: threading.Event, gaps: list[float]) -> None:
        while not stop.is_set():
            before = time.perf_counter()
            time.sleep(0.001)
            gaps.append(time.perf_counter() - before - 0.001)

    maxima = []
    for job in (work, lambda: time.sleep(0.3)):
        stop, gaps = threading.Event(), [0.0]
        watcher = threading.Thread(target=watch, args=(stop, gaps))
        watcher.start()
        time.sleep(0.01)
        try:
            job()
        finally:
            stop.set()
            watcher.join(5)
        maxima.append(max(gaps))
    return maxima[0], maxima[1]


def traced_bytes(build: Callable[[], object]) -> tuple[int, int]:
    """Bytes still allocated by ``build``'s result and the peak while building (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        built = build()
        gc.collect()
        retained, peak = tracemalloc.get_traced_memory()
        del built
    finally:
        tracemalloc.stop()
    return retained, peak


def search_queries(names: Sequence[str], count: int, seed: int) -> list[str]:
    """Autocomplete inputs: prefixes and inner pieces of real names, and misses (a full scan)."""
    rng = random.Random(seed)
    queries = []
    for i in range(count):
        name = rng.choice(names)
        if i % 3 == 0:
            queries.append(name[: rng.randint(1, 4)])
        elif i % 3 == 1:
            start = rng.randrange(max(len(name) - 3, 1))
            queries.append(name[start : start + 3])
        else:
            queries.append("".join(rng.choices("qxzjvk", k=3)))
    return queries


def doubled(ruleset: RuleSet) -> RuleSet:
    """The song table twice over (the copy renamed), no rules: a search over twice the names."""
    names = ruleset.song_names + tuple(f"{name} (again)" for name in ruleset.song_names)
    n = len(names)
    header = dataclasses.replace(ruleset.header, song_count=n, rule_count=0)
    empty = np.zeros(0, dtype=np.uint32)
    return RuleSet(
        header=header,
        song_names=names,
        song_counts=np.concatenate((ruleset.song_counts, ruleset.song_counts)),
        antecedent_offsets=np.zeros(1, dtype=np.uint32),
        antecedent_songs=empty,
        consequents=empty,
        rule_counts=empty,
        antecedent_counts=empty,
    )


def time_search(recommender: Recommender, queries: list[str]) -> Timing:
    """Time ``search`` like ``run`` times ``recommend``."""
    return run(lambda query, limit: recommender.search(query[0], limit), [[q] for q in queries])


def main() -> int:
    """Build, time every query size under each ranking against the baselines, print ratios and
    target verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=Path, help="a rules.cbor to use instead of mining")
    parser.add_argument(
        "--dataset", type=Path, default=DATASET, help="playlists for queries (plain, .gz, .xz)"
    )
    parser.add_argument(
        "--min-support", help="MIN_SUPPORT when mining --dataset (default: the job's)"
    )
    parser.add_argument(
        "--rankings", nargs="+", choices=RANKINGS, default=list(RANKINGS), help="side by side"
    )
    parser.add_argument("--queries", type=int, default=400, help="queries per size (engine)")
    parser.add_argument("--baseline-queries", type=int, default=40, help="per size, at most")
    parser.add_argument("--builds", type=int, default=5, help="timed index builds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rules_path = args.rules or mined_model(args.dataset, args.min_support) / RULES_FILENAME
    started = time.perf_counter()
    ruleset = read_rules(rules_path)
    decode = time.perf_counter() - started
    header = ruleset.header
    print(
        f"rules: {rules_path} — {header.rule_count:,} rules, {header.song_count:,} songs, "
        f"{header.transactions:,} playlists (decode {fmt(decode)})"
    )

    builds = []
    for _ in range(args.builds):
        started = time.perf_counter()
        recommender = Recommender.from_ruleset(ruleset)
        builds.append(time.perf_counter() - started)
    stall, idle_stall = stalls_during(lambda: Recommender.from_ruleset(ruleset))
    retained, peak = traced_bytes(lambda: Recommender.from_ruleset(ruleset))
    started = time.perf_counter()
    baselines = {ranking: Baselines(ruleset, recommender, ranking) for ranking in args.rankings}
    baseline_build = (time.perf_counter() - started) / len(args.rankings)
    baseline_bytes, _ = traced_bytes(lambda: Baselines(ruleset, recommender))
    print(
        f"build (one index serves every ranking): median {fmt(statistics.median(builds))}, "
        f"max {fmt(max(builds))} (baselines' dicts: {fmt(baseline_build)}, "
        f"{baseline_build / min(builds):.0f}× slower)"
    )
    print(
        f"  longest stall of a concurrent thread during a build: {fmt(stall)} "
        f"(same thread idle: {fmt(idle_stall)})"
    )
    print(
        f"  index memory: {retained / 2**20:.1f} MiB retained "
        f"({recommender.index_bytes / 2**20:.1f} MiB of arrays), "
        f"{peak / 2**20:.1f} MiB peak while building; baselines' dicts "
        f"{baseline_bytes / 2**20:.0f} MiB ({baseline_bytes / retained:.0f}× more)"
    )

    playlists = dataset_playlists(args.dataset)
    cap = Settings().max_query_songs
    cases = [
        (f"{size} songs", draw_queries(playlists, size, args.queries, args.seed)) for size in SIZES
    ]
    worst = busiest_songs(ruleset, cap)
    cases.append((f"{cap} busiest songs", [worst] * min(args.queries, 50)))
    failures: list[str] = []
    ranked = {r: replace_ranking(recommender, r) for r in args.rankings}
    p50s: dict[str, dict[str, float]] = {r: {} for r in args.rankings}
    print("queries (limit 10), engine vs baselines (ratio = baseline cpu p50 / engine cpu p50):")
    for label, queries in cases:
        for ranking, index in ranked.items():
            engine = run(index.recommend, queries)
            p50s[ranking][label] = engine.cpu_p50
            print(f"  {label:>18}: {ranking:<4} engine   {engine.describe()}")
            labelled = f"{ranking}, {label}"
            time_baselines(
                baselines[ranking],
                engine,
                queries,
                label=labelled,
                baseline_queries=args.baseline_queries,
                failures=failures,
            )
            if label == "5 songs" and engine.cpu_p50 * 1e6 > TARGET_P50_5_SONGS_US:
                failures.append(f"{ranking}: 5-song p50 above {TARGET_P50_5_SONGS_US:g} µs")
            if max(engine.cpu) * 1e3 > TARGET_MAX_MS:
                failures.append(f"{ranking}, {label}: a query above {TARGET_MAX_MS:g} ms")
    if len(args.rankings) > 1:
        print("rankings side by side (engine cpu p50):")
        for label, _ in cases:
            line = " | ".join(f"{r} {fmt(p50s[r][label])}" for r in args.rankings)
            ratio = p50s[args.rankings[-1]][label] / p50s[args.rankings[0]][label]
            print(f"  {label:>18}: {line}  ({args.rankings[-1]}/{args.rankings[0]} {ratio:.2f})")
    python_path = (
        Recommender.from_ruleset(ruleset, compiled=False) if SmallQueryIndex is not None else None
    )
    for ranking in args.rankings:
        compare_query_paths(
            ranked[ranking],
            playlists,
            python_path=None if python_path is None else replace_ranking(python_path, ranking),
            count=args.queries,
            seed=args.seed,
            failures=failures,
        )
    inputs = search_queries(ruleset.song_names, args.queries, args.seed)
    print("autocomplete (limit 10; prefixes, inner pieces and misses of real names):")
    for index in (recommender, Recommender.from_ruleset(doubled(ruleset))):
        print(f"  {index.song_count:>9,} songs: {time_search(index, inputs).describe()}")
    for failure in failures:
        print(f"FAILED: {failure}")
    print("targets: " + ("missed" if failures else "met (5-song p50 ≤ 100 µs, all ≤ 20 ms)"))
    return 1 if failures else 0


def replace_ranking(recommender: Recommender, ranking: str) -> Recommender:
    """The same index answering ``recommend`` with ``ranking``."""
    return dataclasses.replace(recommender, ranking=ranking)


def time_baselines(
    baselines: Baselines,
    engine: Timing,
    queries: list[list[str]],
    *,
    label: str,
    baseline_queries: int,
    failures: list[str],
) -> None:
    """Time the original (where it finishes) and the rarest scan on the first queries; their
    answers must be the engine's."""
    known = len(baselines.match(queries[0]))
    subsets = baselines.subsets(known)
    reference = queries[:baseline_queries]
    if subsets <= ORIGINAL_MAX_SUBSETS:
        original = run(baselines.original, reference, BASELINE_BUDGET_SECONDS)
        baselines.per_subset = original.cpu_p50 / max(subsets, 1)
        ratio = original.cpu_p50 / engine.cpu_p50
        print(f"  {'':>18}       original {original.describe()}  → {times(ratio)}")
        check(original.answers, engine.answers, "original", label, failures)
    elif baselines.per_subset is not None:
        print(
            f"  {'':>18}       original skipped: {subsets:,} subset lookups per query "
            f"(would take ~{fmt(subsets * baselines.per_subset)} each)"
        )
    scan = run(baselines.rarest_scan, reference, BASELINE_BUDGET_SECONDS)
    ratio = scan.cpu_p50 / engine.cpu_p50
    print(f"  {'':>18}       rarest   {scan.describe()}  → {times(ratio)}")
    check(scan.answers, engine.answers, "rarest scan", label, failures)


def compare_query_paths(
    recommender: Recommender,
    playlists: list[list[str]],
    *,
    python_path: Recommender | None,
    count: int,
    seed: int,
    failures: list[str],
) -> None:
    """Both query paths on the same queries of 1 to FEW_QUERY_SONGS + 4 songs: the subset
    lookups (what the engine uses up to the switch; compiled, and in Python when the compiled
    path was built) against the vectorised scan (above it)."""
    switch = recommender_module.FEW_QUERY_SONGS
    ranking = recommender.ranking
    print(
        f"query paths, ranking {ranking} (the engine switches to the scan above {switch} known "
        "songs):"
    )
    for size in range(1, switch + 5):
        queries = draw_queries(playlists, size, count, seed)
        # The subsets answer at `size`, the scan below it.
        paths = [("subsets", recommender, size), ("scan", recommender, size - 1)]
        if python_path is not None:
            paths.insert(1, ("in Python", python_path, size))
        timings: dict[str, Timing] = {}
        for name, index, forced in paths:
            recommender_module.FEW_QUERY_SONGS = forced
            try:
                timings[name] = run(index.recommend, queries)
            finally:
                recommender_module.FEW_QUERY_SONGS = switch
        subsets = timings["subsets"]
        line = " | ".join(
            f"{name} cpu p50 {fmt(timing.cpu_p50)} max {fmt(max(timing.cpu))}"
            for name, timing in timings.items()
        )
        faster = times(timings["scan"].cpu_p50 / subsets.cpu_p50)
        print(f"  {size:>2} songs: {line}  → subsets {faster} faster than the scan")
        for name, timing in timings.items():
            label = f"{ranking}, {size} songs"
            check(timing.answers, subsets.answers, f"{name} path", label, failures)


def check(
    expected: list[list[str]], got: list[list[str]], name: str, label: str, failures: list[str]
) -> None:
    """Record a failure when a baseline's answers differ from the engine's."""
    if any(a != b for a, b in zip(expected, got, strict=False)):
        failures.append(f"{label}: the {name} answers differ from the engine's")


if __name__ == "__main__":
    sys.exit(main())
