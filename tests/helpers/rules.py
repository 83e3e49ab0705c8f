"""Rule sets for tests, written to a DATA_DIR the way the miner commits them.

``build_ruleset`` packs a test's own songs and rules (``HeaderFields`` not given take the
defaults below); ``small_ruleset`` is a hand-made set whose recommendations are easy to predict;
``synthetic_ruleset`` builds hundreds of thousands of rules with numpy (no Python object per
rule) for reload-under-load tests. ``write_model`` commits a rule set with the job's own commit
(``mining.datadir``), ``write_legacy_model`` writes rules.cbor and the checkpoint only, as
version 0.1.0 of the job did; ``read_model`` reads them back as the server does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mining.checkpoint import CHECKPOINT_FILENAME, Checkpoint, read_checkpoint, write_checkpoint
from mining.datadir import commit_rules
from mining.rulesfile import (
    RULES_FILENAME,
    MiningParameters,
    RuleSet,
    RulesHeader,
    encode_rules,
    pack_rules,
    read_rules,
    write_rules,
)
from recommender.engine import Recommender
from recommender.snapshot import Snapshot

VERSION = "9.9.9"
DATASET_URL = "file:///data/test%20playlists.csv"
FIRST_NS = 1_700_000_000_123_456_789
PARAMETERS = MiningParameters(min_support=0.025, min_confidence=0.7, max_len=8)
# (antecedent song ids, consequent song id, count(A ∪ c), count(A)), as pack_rules takes them.
Rule = tuple[Sequence[int], int, int, int]

SONGS = ("Hey Jude", "Let It Be", "Yesterday", "Imagine", "Help!")
SONG_COUNTS = (90, 80, 70, 60, 50)
# (antecedent ids, consequent id, count(A ∪ c), count(A)): "Hey Jude" → "Yesterday" (0.9),
# "Hey Jude" → "Imagine" (0.8), {"Hey Jude", "Let It Be"} → "Help!" (1.0).
RULES = (((0,), 2, 81, 90), ((0,), 3, 72, 90), ((0, 1), 4, 40, 40))


@dataclasses.dataclass(frozen=True)
class HeaderFields:
    """The rules-header fields a test may choose; the sizes come from the rules themselves."""

    transactions: int = 100
    generated_ns: int = FIRST_NS
    version: str = VERSION
    dataset_url: str = DATASET_URL
    parameters: MiningParameters = PARAMETERS
    engine: str = "test"

    def header(self, song_count: int, rule_count: int) -> RulesHeader:
        """The header of a rule set of ``song_count`` songs and ``rule_count`` rules."""
        return RulesHeader(
            package_version=self.version,
            dataset_url=self.dataset_url,
            generated_ns=self.generated_ns,
            parameters=self.parameters,
            engine=self.engine,
            transactions=self.transactions,
            song_count=song_count,
            rule_count=rule_count,
        )


def build_ruleset(
    song_names: Sequence[str],
    song_counts: npt.ArrayLike,
    rules: Sequence[Rule],
    fields: HeaderFields = HeaderFields(),
) -> RuleSet:
    """The rule set over ``song_names`` (with their playlist counts) holding ``rules``."""
    offsets, ante, cons, counts, ante_counts = pack_rules(rules)
    return RuleSet(
        header=fields.header(len(song_names), len(rules)),
        song_names=tuple(song_names),
        song_counts=np.array(song_counts, dtype=np.uint32),
        antecedent_offsets=offsets,
        antecedent_songs=ante,
        consequents=cons,
        rule_counts=counts,
        antecedent_counts=ante_counts,
    )


def small_ruleset(
    generated_ns: int = FIRST_NS, rules: Sequence[Rule] = RULES, version: str = VERSION
) -> RuleSet:
    """Five Beatles-ish songs and three rules (see RULES)."""
    fields = HeaderFields(generated_ns=generated_ns, version=version)
    return build_ruleset(SONGS, SONG_COUNTS, rules, fields)


def synthetic_ruleset(
    n_rules: int, n_songs: int = 5000, generated_ns: int = FIRST_NS, seed: int = 0
) -> RuleSet:
    """About ``n_rules`` distinct rules with 1-3 antecedent songs over Zipf-like popularity."""
    rng = np.random.default_rng(seed)
    transactions = 100_000
    song_counts = (transactions * 0.4 / (np.arange(n_songs) + 1) ** 0.5).astype(np.int64) + 10
    draws = rng.integers(0, n_songs, size=(int(n_rules * 1.3) + 100, 4))
    ordered = np.sort(draws, axis=1)
    draws = draws[(ordered[:, 1:] != ordered[:, :-1]).all(axis=1)]
    lengths = rng.choice([1, 2, 3], size=len(draws), p=[0.2, 0.5, 0.3])
    antecedents = draws[:, :3].copy()
    unused = np.arange(3)[None, :] >= lengths[:, None]
    antecedents[unused] = n_songs  # padding sorts last
    antecedents.sort(axis=1)
    rows = np.column_stack([antecedents, draws[:, 3]])
    first = np.sort(np.unique(rows, axis=0, return_index=True)[1])[:n_rules]
    antecedents, consequents, lengths = antecedents[first], draws[first, 3], lengths[first]
    used = antecedents < n_songs
    padded_counts = np.where(used, song_counts[np.minimum(antecedents, n_songs - 1)], 1 << 40)
    ante_counts = np.maximum(
        (padded_counts.min(axis=1) * rng.uniform(0.3, 1.0, len(first))).astype(np.int64), 1
    )
    rule_counts = np.clip(
        np.ceil(ante_counts * rng.uniform(0.7, 1.0, len(first))).astype(np.int64), 1, ante_counts
    )
    offsets = np.zeros(len(first) + 1, dtype=np.uint32)
    offsets[1:] = np.cumsum(lengths)
    return RuleSet(
        header=HeaderFields(transactions=transactions, generated_ns=generated_ns).header(
            n_songs, len(first)
        ),
        song_names=tuple(f"song {i:05d}" for i in range(n_songs)),
        song_counts=song_counts.astype(np.uint32),
        antecedent_offsets=offsets,
        antecedent_songs=antecedents[used].astype(np.uint32),
        consequents=consequents.astype(np.uint32),
        rule_counts=rule_counts.astype(np.uint32),
        antecedent_counts=ante_counts.astype(np.uint32),
    )


def regenerated(ruleset: RuleSet, generated_ns: int) -> RuleSet:
    """The same rules as if mined again at ``generated_ns``."""
    header = dataclasses.replace(ruleset.header, generated_ns=generated_ns)
    return dataclasses.replace(ruleset, header=header)


def checkpoint_of(ruleset: RuleSet) -> Checkpoint:
    """The checkpoint that commits ``ruleset``."""
    h = ruleset.header
    return Checkpoint(
        version=h.package_version, dataset_url=h.dataset_url, generated_ns=h.generated_ns
    )


def write_model(data_dir: Path, ruleset: RuleSet) -> Checkpoint:
    """Commit ``ruleset`` with the job's own commit: its generation's rules file, then the
    checkpoint (the commit marker), then rules.cbor, then the older generations removed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = checkpoint_of(ruleset)
    commit_rules(data_dir, encode_rules(ruleset), checkpoint)
    return checkpoint


def write_legacy_model(data_dir: Path, ruleset: RuleSet) -> Checkpoint:
    """Write rules.cbor, then the checkpoint, atomically, and no generation file: the layout
    version 0.1.0 of the job left (and what a hand-written tool may still write)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    write_rules(data_dir / RULES_FILENAME, ruleset)
    checkpoint = checkpoint_of(ruleset)
    write_checkpoint(data_dir / CHECKPOINT_FILENAME, checkpoint)
    return checkpoint


def read_model(data_dir: Path) -> Snapshot:
    """The snapshot a server loads from ``data_dir``: the rules file read back and indexed,
    with the checkpoint."""
    loaded = read_rules(data_dir / RULES_FILENAME)
    return Snapshot(
        checkpoint=read_checkpoint(data_dir / CHECKPOINT_FILENAME),
        header=loaded.header,
        recommender=Recommender.from_ruleset(loaded),
    )


def snapshot_of(ruleset: RuleSet) -> Snapshot:
    """The snapshot the RuleServer would build from ``ruleset`` (no file involved)."""
    return Snapshot(
        checkpoint=checkpoint_of(ruleset),
        header=ruleset.header,
        recommender=Recommender.from_ruleset(ruleset),
    )
