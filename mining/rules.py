"""Exact single-consequent association rules from frequent-itemset counts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

# (antecedent song ids ascending, consequent song id, count(A ∪ {c}), count(A))
Rule = tuple[tuple[int, ...], int, int, int]


def exact_fraction(value: float) -> Fraction:
    """The decimal a user wrote (0.7 → 7/10), not the binary float nearest to it.

    ``repr`` gives the shortest decimal that round-trips, which is what was typed
    for any threshold written with up to 15 significant digits.
    """
    return Fraction(repr(value))


def min_count(min_support: float, transactions: int) -> int:
    """The smallest integer c with c / transactions ≥ min_support, compared exactly."""
    return math.ceil(exact_fraction(min_support) * transactions)


def derive_rules(itemsets: Mapping[tuple[int, ...], int], min_confidence: float) -> list[Rule]:
    """Every ``A → c`` with A ∪ {c} frequent and count(A ∪ {c}) / count(A) ≥ min_confidence.

    Compared as ``count(S) · den ≥ num · count(A)`` on integers, so a rule whose
    confidence equals the threshold exactly is kept. ``itemsets`` must be closed
    under subsets (every subset of a frequent itemset is frequent), which mining gives.
    """
    threshold = exact_fraction(min_confidence)
    num, den = threshold.numerator, threshold.denominator
    rules: list[Rule] = []
    append = rules.append
    for itemset, count in itemsets.items():
        if len(itemset) < 2:
            continue
        scaled = count * den
        for i, consequent in enumerate(itemset):
            antecedent = itemset[:i] + itemset[i + 1 :]
            antecedent_count = itemsets[antecedent]
            if scaled >= num * antecedent_count:
                append((antecedent, consequent, count, antecedent_count))
    return rules
