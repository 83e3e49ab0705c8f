"""Exact single-consequent association rules from frequent-itemset counts, vectorised.

Each itemset S of k ≥ 2 songs gives k candidate rules ``S − {c} → c``; the
antecedent's count is found by a binary search among the itemsets of k − 1 songs
(rows compared as bytes), and the rule is kept iff ``count(S) · den ≥ num · count(A)``
on integers, where ``num/den`` is the confidence threshold as the decimal written.
The rules come out as the packed arrays of the rules file, in its canonical order:
about 20 bytes a rule where a Python tuple per rule took ~150.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from mining.itemsets import ItemsetTable, lexicographic_order
from mining.support import count_for_fraction, exact_fraction

__all__ = ["PackedRules", "Rule", "derive_packed", "derive_rules", "exact_fraction", "min_count"]

# (antecedent song ids ascending, consequent song id, count(A ∪ {c}), count(A))
Rule = tuple[tuple[int, ...], int, int, int]
U32 = npt.NDArray[np.uint32]
# (antecedent_offsets, antecedent_songs, consequents, rule_counts, antecedent_counts)
PackedRules = tuple[U32, U32, U32, U32, U32]
# Itemsets per vectorised step: bounds the temporaries (~100 bytes an itemset) whatever the size.
_CHUNK = 1 << 20
# A rule needs an antecedent and a consequent: itemsets of one song give none.
_MIN_RULE_SIZE = 2
min_count = count_for_fraction


def _keep(
    counts: npt.NDArray[np.int64], antecedents: npt.NDArray[np.int64], num: int, den: int
) -> npt.NDArray[np.bool_]:
    """``counts · den ≥ num · antecedents`` exactly (Python integers when int64 could overflow)."""
    largest = int(max(counts.max(initial=0), antecedents.max(initial=0)))
    if largest * max(num, den) < 2**62:
        return counts * den >= antecedents * num
    return np.array(
        [c * den >= a * num for c, a in zip(counts.tolist(), antecedents.tolist(), strict=True)],
        dtype=bool,
    )


def _rules_of_size(table: ItemsetTable, size: int, num: int, den: int) -> tuple[U32, U32, U32, U32]:
    """Rules from the itemsets of ``size`` songs: antecedent rows, consequents, both counts."""
    group = table.groups[size]
    parts: list[tuple[U32, U32, npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
    for start in range(0, len(group.counts), _CHUNK):
        songs = group.songs[start : start + _CHUNK]
        counts = group.counts[start : start + _CHUNK]
        for position in range(size):
            antecedents = np.delete(songs, position, axis=1)
            antecedent_counts = table.lookup(antecedents)
            keep = _keep(counts, antecedent_counts, num, den)
            parts.append(
                (
                    antecedents[keep],
                    songs[keep, position],
                    counts[keep],
                    antecedent_counts[keep],
                )
            )
    antecedents = np.concatenate([p[0] for p in parts])
    consequents = np.concatenate([p[1] for p in parts])
    # Canonical order: antecedent ids, then consequent.
    order = lexicographic_order(np.column_stack([antecedents, consequents]))
    return (
        antecedents[order].astype(np.uint32),
        consequents[order].astype(np.uint32),
        np.concatenate([p[2] for p in parts])[order].astype(np.uint32),
        np.concatenate([p[3] for p in parts])[order].astype(np.uint32),
    )


def derive_packed(itemsets: Mapping[tuple[int, ...], int], min_confidence: float) -> PackedRules:
    """Every ``A → c`` with A ∪ {c} frequent and count(A ∪ {c}) / count(A) ≥ min_confidence.

    ``itemsets`` must be closed under subsets (every subset of a frequent itemset is
    frequent), which mining gives. The rules come packed and in the rules file's
    canonical order (antecedent length, antecedent ids, consequent), as ``pack_rules``
    would order the same rules.
    """
    table = ItemsetTable.from_mapping(itemsets)
    threshold = exact_fraction(min_confidence)
    num, den = threshold.numerator, threshold.denominator
    lengths, songs, consequents, counts, antecedent_counts = [], [], [], [], []
    for size in sorted(s for s in table.groups if s >= _MIN_RULE_SIZE):
        antecedents, cons, rule_counts, ante_counts = _rules_of_size(table, size, num, den)
        lengths.append(np.full(len(cons), size - 1, dtype=np.int64))
        songs.append(antecedents.reshape(-1))
        consequents.append(cons)
        counts.append(rule_counts)
        antecedent_counts.append(ante_counts)
    if not lengths:
        empty = np.zeros(0, dtype=np.uint32)
        return np.zeros(1, dtype=np.uint32), empty, empty, empty, empty
    offsets = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.uint32)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return (
        offsets,
        np.concatenate(songs),
        np.concatenate(consequents),
        np.concatenate(counts),
        np.concatenate(antecedent_counts),
    )


def derive_rules(itemsets: Mapping[tuple[int, ...], int], min_confidence: float) -> list[Rule]:
    """The rules of ``derive_packed`` as ``(antecedent, consequent, count, antecedent count)``."""
    offsets, songs, consequents, counts, antecedent_counts = derive_packed(itemsets, min_confidence)
    bounds, flat = offsets.tolist(), songs.tolist()
    return [
        (tuple(flat[bounds[i] : bounds[i + 1]]), c, n, a)
        for i, (c, n, a) in enumerate(
            zip(consequents.tolist(), counts.tolist(), antecedent_counts.tolist(), strict=True)
        )
    ]
