"""The actor system behind ``python -m http_api``: watcher → rule server → HTTP frontend.

:class:`RulesWatcher` tells the :class:`RuleServer` to check DATA_DIR; the RuleServer loads new
rules and pushes snapshots to the :class:`HttpFrontend`, which serves them from its own event
loop; the :class:`Supervisor` starts, restarts and stops them. docs/actors.md has the why.
"""

from actors.frontend import HttpFrontend, Serve
from actors.gate import LoopGate, RulesGate
from actors.rule_server import RuleServer
from actors.supervisor import ActorSettings, Supervisor, SupervisorError, bind_listener
from actors.watcher import RulesWatcher

__all__ = [
    "ActorSettings",
    "HttpFrontend",
    "LoopGate",
    "RuleServer",
    "RulesGate",
    "RulesWatcher",
    "Serve",
    "Supervisor",
    "SupervisorError",
    "bind_listener",
]
