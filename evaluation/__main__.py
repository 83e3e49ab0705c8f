"""``python -m evaluation DATASET``: how useful are the mined rules on held-out playlists?

Splits the playlists into folds, mines each training part with the job's own code and
settings (the environment, as ``python -m mining`` reads it, or a small grid given here),
asks the server's own recommender for each ranking, and prints HR@k, recall@k, NDCG@k and
R-precision beside two baselines computed in the same run: popularity and item
co-occurrence kNN. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from evaluation.mine import mine_fold
from evaluation.protocol import Baselines, Fold, Scores, make_folds
from evaluation.report import Row, render_table
from mining.errors import EXPECTED_ERRORS
from mining.reader import read_playlist_rows
from mining.settings import Settings
from mining.support import playlists_text
from mining.version import version_line
from recommender.engine import RANKINGS, Recommender

# The job's variables a grid option overrides, and the option that does it.
GRID = {
    "MIN_SUPPORT": "min_support",
    "MIN_CONFIDENCE": "min_confidence",
    "MAX_LEN": "max_len",
    "MINING_ENGINE": "engine",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Mining parameters not given here come from the environment, as the job reads "
        "them (MIN_SUPPORT, MIN_CONFIDENCE, MAX_LEN, MINING_ENGINE, MINING_MEMORY_LIMIT). "
        "Exit codes: 0 done, 2 bad arguments or settings, 3 unusable dataset, 4 dataset not "
        "available.",
    )
    parser.add_argument("dataset", help="playlists CSV: a path, file:// or http(s):// URL")
    parser.add_argument("--folds", type=int, default=5, help="number of folds [5]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle [0]")
    parser.add_argument(
        "--seed-songs",
        type=int,
        metavar="K",
        help="give K random songs of each test playlist instead of the first half",
    )
    parser.add_argument("-k", type=int, default=10, help="answers scored per query [10]")
    for option, dest in (
        ("--min-support", "min_support"),
        ("--min-confidence", "min_confidence"),
        ("--max-len", "max_len"),
        ("--engine", "engine"),
    ):
        parser.add_argument(
            option, dest=dest, action="append", help="a value to try (repeat for a grid)"
        )
    parser.add_argument(
        "--ranking",
        action="append",
        choices=RANKINGS,
        help=f"ranking to score (repeat; default: all of {', '.join(RANKINGS)})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--version", action="version", version=version_line("evaluation"))
    return parser


def grid_settings(args: argparse.Namespace, env: Mapping[str, str]) -> list[Settings]:
    """Every combination of the grid's values, each read by the job's own Settings."""
    axes = [
        [(name, value) for value in getattr(args, dest)]
        for name, dest in GRID.items()
        if getattr(args, dest)
    ]
    return [Settings.from_env({**env, **dict(choice)}) for choice in itertools.product(*axes)]


def _describe(settings: Settings, min_count: int | None) -> str:
    resolved = ""
    if min_count is not None and settings.min_support != playlists_text(min_count):
        resolved = f" (= {playlists_text(min_count)})"
    return (
        f"support {settings.min_support}{resolved}, confidence {settings.min_confidence!r}, "
        f"max_len {settings.max_len}, {settings.engine}"
    )


def evaluate(
    folds: Sequence[Fold], combos: Sequence[Settings], rankings: Sequence[str], k: int
) -> list[Row]:
    """Score the baselines and every (settings, ranking) over all folds' queries."""
    popularity, knn = Scores(k), Scores(k)
    for fold in folds:
        baselines = Baselines(fold.train)
        for query in fold.queries:
            limit = max(k, len(query.truth))
            popularity.add(baselines.popularity(query.seed, limit), query.truth, fired=False)
            neighbours, found = baselines.knn(query.seed, limit)
            knn.add(neighbours, query.truth, fired=found)
    rows = [Row("popularity", "", popularity.mean()), Row("item kNN (cosine)", "", knn.mean())]
    for settings in combos:
        scores = {ranking: Scores(k) for ranking in rankings}
        rules, seconds, peak, error = 0, 0.0, 0, None
        counts: set[int] = set()
        for fold in folds:
            run = mine_fold(fold.train, settings)
            seconds += run.seconds
            if run.mined is None:
                error = run.error
                break
            mined = run.mined
            peak = max(peak, mined.peak_rss_bytes or 0)
            counts.add(mined.min_count)
            rules += mined.ruleset.header.rule_count
            # One index serves every ranking.
            recommender = Recommender.from_ruleset(mined.ruleset)
            for ranking in rankings:
                for query in fold.queries:
                    limit = max(k, len(query.truth))
                    answer = recommender.explain(query.seed, limit, ranking=ranking)
                    scores[ranking].add(answer.songs, query.truth, fired=answer.from_rules > 0)
        cost = {
            "rules": rules / len(folds),
            "mining_seconds": seconds / len(folds),
            "peak_rss_bytes": peak,
        }
        described = _describe(settings, min(counts) if len(counts) == 1 else None)
        for ranking in rankings:
            figures = {} if error else scores[ranking].mean()
            rows.append(Row(f"rules, {ranking}", described, {**figures, **cost}, error=error))
    return rows


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the evaluation; return the exit code."""
    args = _parser().parse_args(argv)
    env = dict(os.environ if env is None else env)
    for name, value, low in (
        ("--folds", args.folds, 2),
        ("-k", args.k, 1),
        ("--seed-songs", args.seed_songs, 1),
    ):
        if value is not None and value < low:
            print(f"evaluation: error: {name} must be >= {low}", file=sys.stderr)
            return 2
    try:
        combos = grid_settings(args, env)
        with tempfile.TemporaryDirectory(prefix="evaluation-") as scratch:
            # Imported here: aiohttp is needed only for http(s) datasets.
            from mining.download import DownloadError, resolve_dataset  # noqa: PLC0415

            try:
                path = resolve_dataset(args.dataset, Path(scratch))
            except DownloadError as exc:
                print(f"evaluation: error: {exc}", file=sys.stderr)
                return 4
            rows_read = read_playlist_rows(path)
        folds = list(make_folds(rows_read, args.folds, args.seed, args.seed_songs))
    except EXPECTED_ERRORS as exc:
        print(f"evaluation: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"evaluation: error: {exc}", file=sys.stderr)
        return 3
    rankings = args.ranking or list(RANKINGS)
    rows = evaluate(folds, combos, rankings, args.k)
    queries = sum(len(fold.queries) for fold in folds)
    if args.json:
        print(
            json.dumps(
                {
                    "dataset": args.dataset,
                    "folds": args.folds,
                    "seed": args.seed,
                    "seed_songs": args.seed_songs,
                    "k": args.k,
                    "queries": queries,
                    "rows": [row.as_dict() for row in rows],
                },
                indent=2,
            )
        )
    else:
        print(render_table(rows, args.k, queries, args.folds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
