"""Exact ranking keys and sum weights for every rule, computed from the rule counts at build time.

A rule's confidence rank orders rules by ``count(A∪c)/count(A)`` exactly (float division is
only a first sort; equal floats are checked with integer cross-multiplication), and its weight
is the confidence in fixed point for the ``sum`` ranking. docs/recommender-design.md proves
both exact.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.integer]
U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]

# The sum ranking's fixed point: a confidence c is the integer round(c · 2^WEIGHT_BITS). With
# c ≤ 1 a weight fits in uint32, and a sum of fewer than 2^33 of them in uint64.
WEIGHT_BITS = 31


def confidence_ranks(rule_counts: IntArray, antecedent_counts: IntArray) -> I64:
    """Dense rank of each rule's confidence ``rule_count/antecedent_count`` (0 = lowest), exact."""
    if not len(rule_counts):
        return np.zeros(0, dtype=np.int64)
    pairs = (rule_counts.astype(np.uint64) << np.uint64(32)) | antecedent_counts.astype(np.uint64)
    # np.unique(return_inverse=True) by hand: numpy's holds the GIL throughout, which would
    # stall the event loop during a reload (benchmarks/serve_reload.py).
    # Temporaries of a rule's size are dropped as soon as they are used: on a million rules
    # each is 8 MB, and the build's peak is what a reload adds to the server's memory.
    n_rules = len(pairs)
    by_pair = np.argsort(pairs, kind="stable")
    sorted_pairs = pairs[by_pair]
    del pairs
    first = np.empty(n_rules, dtype=np.bool_)
    first[0] = True
    np.not_equal(sorted_pairs[1:], sorted_pairs[:-1], out=first[1:])
    distinct = sorted_pairs[first]
    del sorted_pairs
    rule_pair = np.empty(n_rules, dtype=np.int64)
    rule_pair[by_pair] = np.cumsum(first) - 1
    del by_pair, first
    numerators = distinct >> np.uint64(32)
    denominators = distinct & np.uint64(0xFFFFFFFF)
    values = numerators.astype(np.float64) / denominators.astype(np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    same_float = sorted_values[1:] == sorted_values[:-1]
    if bool(same_float.any()):
        # Products of two uint32 fit in uint64: an exact comparison of a/b and c/d.
        num, den = numerators[order], denominators[order]
        merged = np.flatnonzero(same_float & (num[1:] * den[:-1] != num[:-1] * den[1:]))
        if len(merged):
            order = _order_merged_runs(order, sorted_values, merged, numerators, denominators)
    num, den = numerators[order], denominators[order]
    new_value = num[1:] * den[:-1] != num[:-1] * den[1:]
    rank_in_order = np.concatenate(([0], np.cumsum(new_value, dtype=np.int64)))
    rank_of_distinct = np.empty(len(distinct), dtype=np.int64)
    rank_of_distinct[order] = rank_in_order
    return rank_of_distinct[rule_pair]


def _order_merged_runs(
    order: I64, sorted_values: npt.NDArray[np.float64], merged: I64, num: U64, den: U64
) -> I64:
    """Re-sort exactly each run of equal floats holding a merge (``merged``: its positions)."""
    order = order.copy()
    run_starts = np.flatnonzero(np.diff(sorted_values, prepend=-1.0) != 0)
    run_ends = np.append(run_starts[1:], len(order))
    for run in np.unique(np.searchsorted(run_starts, merged, side="right") - 1).tolist():
        start, end = int(run_starts[run]), int(run_ends[run])
        order[start:end] = sorted(
            order[start:end].tolist(), key=lambda i: Fraction(int(num[i]), int(den[i]))
        )
    return order


def confidence_weights(rule_counts: IntArray, antecedent_counts: IntArray) -> U32:
    """Each rule's confidence in fixed point, ``round(count(A∪c) · 2^WEIGHT_BITS / count(A))``
    (halves up), computed exactly in integers."""
    numerators = rule_counts.astype(np.uint64) << np.uint64(WEIGHT_BITS)
    denominators = antecedent_counts.astype(np.uint64)
    # floor((n + floor(d/2)) / d) is floor(n/d + 1/2): for an odd d, n/d + 1/2 is never whole.
    # No overflow: counts are uint32, so n + d/2 < 2^63.
    weights = (numerators + (denominators >> np.uint64(1))) // denominators
    return weights.astype(np.uint32)
