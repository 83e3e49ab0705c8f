"""One loaded rule set as the server serves it: the checkpoint, the header and the index.

A snapshot is immutable and shared by every request until the RuleServer swaps in the next
one; it also writes the body of an answer, so the JSON of ``POST /api/recommend`` is built in
this one place.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass

from mining.checkpoint import Checkpoint
from mining.limits import MAX_LIMIT
from mining.rulesfile import RulesHeader
from mining.version import __version__
from recommender.engine import Recommender


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One loaded rule set: immutable, shared by every request until the next swap."""

    checkpoint: Checkpoint
    header: RulesHeader
    recommender: Recommender

    @property
    def model_date(self) -> str:
        """The checkpoint's generation time as served in ``model_date``."""
        return self.checkpoint.model_date

    @property
    def generated_ns(self) -> int:
        """The checkpoint's generation time in ns since the epoch."""
        return self.checkpoint.generated_ns

    def answer_json(self, songs: Sequence[str], limit: int, ranking: str) -> bytes:
        """The body of the answer to a recommendation request for ``songs``: ``songs``,
        ``version``, ``model_date``, ``from_rules`` and ``unknown``, as one JSON object.

        Without unknown songs (the usual case) its end is one of a few strings formatted once
        per rule set, not once per request.
        """
        names, from_rules, unknown = self.recommender.explain_json(songs, limit, ranking=ranking)
        if not unknown and from_rules <= MAX_LIMIT:
            return b'{"songs": ' + names + self._known_tails[from_rules]
        return b'{"songs": ' + names + self._format_tail(from_rules, unknown)

    @functools.cached_property
    def _known_tails(self) -> tuple[bytes, ...]:
        """The tails without unknown songs, by ``from_rules`` up to the largest ``limit``."""
        return tuple(self._format_tail(from_rules, ()) for from_rules in range(MAX_LIMIT + 1))

    def _format_tail(self, from_rules: int, unknown: Sequence[str]) -> bytes:
        version, model_date = json.dumps(__version__), json.dumps(self.model_date)
        return (
            f', "version": {version}, "model_date": {model_date}, '
            f'"from_rules": {from_rules}, "unknown": {json.dumps(list(unknown))}}}'
        ).encode()
