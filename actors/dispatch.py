"""The one message dispatch the three actors share: answer :class:`Ping`, hand every other
message to ``handle``, and log (never die of) what a handler raises."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import pykka

from actors.messages import Ping


class LoggingActor(pykka.ThreadingActor):
    """A ThreadingActor whose handler errors are logged, its state kept, and messages go on.

    A one-way message whose handler raises kills a pykka actor without a word; these actors
    hold the rules, the listening socket and the watch on DATA_DIR, so they log and keep going.
    Log lines go to the logger of the subclass's module, prefixed with :attr:`label`.
    """

    # How log lines name the actor, e.g. "rule server".
    label: ClassVar[str] = "actor"

    def on_receive(self, message: Any) -> Any:
        """Answer Ping (the actor has finished ``on_start``), else dispatch to ``handle``."""
        if isinstance(message, Ping):
            return True
        try:
            return self.handle(message)
        except Exception:
            self._log.exception("%s: handling %s failed", self.label, type(message).__name__)
            return None

    def handle(self, message: Any) -> Any:
        """Handle one message of the actor's protocol (actors/messages.py)."""
        raise NotImplementedError

    def unexpected(self, message: Any) -> None:
        """Log a message outside the actor's protocol (it is dropped)."""
        self._log.warning("%s: unexpected message %r", self.label, message)

    @property
    def _log(self) -> logging.Logger:
        return logging.getLogger(type(self).__module__)
